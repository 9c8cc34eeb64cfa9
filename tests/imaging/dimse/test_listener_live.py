"""The DICOM listener as dcmtk sees it: C-ECHO, association control by called and calling AE title, the listener
embedded in `manage.py serve`."""
from __future__ import annotations

import pytest

from tests.clients import imaging_client, wait_for
from tests.dimse import DicomListener, datastore_ae_set, dicom_node_add, orm
from tests.paths import DICOM_DIR
from tests.servers import ApertureServer, free_port, wait_for_http

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server():
    instance = ApertureServer().start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def store_ae(server):
    """An ACTIVE data store called STORE1."""
    mi = imaging_client(server.url, server.create_key())
    datastore_id = mi.create_datastore(datastoreName="dimse")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    datastore_ae_set(server, datastore_id, "STORE1")
    return "STORE1"


@pytest.fixture(scope="module")
def listener(server):
    instance = DicomListener(server).start()
    yield instance
    instance.stop()


class TestEcho:
    def test_the_listener_ae_title_answers_echo(self, listener):
        assert listener.echo().returncode == 0

    def test_a_data_store_ae_title_answers_echo(self, listener, store_ae):
        assert listener.echo(called=store_ae).returncode == 0

    def test_an_unknown_called_ae_title_is_rejected(self, listener):
        result = listener.echo(called="NOBODY")
        assert result.returncode != 0
        assert "Called AE Title Not Recognized" in result.stderr + result.stdout

    def test_every_association_is_audited(self, listener, store_ae, server):
        listener.echo(called=store_ae, calling="AUDITED")
        listener.echo(called="NOBODY", calling="AUDITED")
        events = orm(server, "from imaging.models import AuditEvent; import json; print(json.dumps([[e.status_code, "
                             "e.datastore_id, e.source_ip, e.request_parameters, e.error_message] for e in "
                             "AuditEvent.objects.filter(event_name='DICOMAssociate').order_by('event_time') "
                             "if e.request_parameters.get('callingAETitle') == 'AUDITED']))")
        accepted, rejected = events
        assert accepted[0] == 200 and accepted[1] and accepted[2] == "127.0.0.1"
        assert accepted[3]["calledAETitle"] == store_ae
        assert rejected[0] == 403 and rejected[3]["calledAETitle"] == "NOBODY"
        assert rejected[4] == "called AE title not recognised"


@pytest.fixture(scope="module")
def strict(server, store_ae):
    """A listener with APERTURE_DICOM_ALLOW_ANY=false, started by the first test that needs it, as a known node (it
    refuses ECHOSCU)."""
    dicom_node_add(server, ae_title="KNOWN", host="127.0.0.1", may_store=True)
    dicom_node_add(server, ae_title="ELSEWHERE", host="192.0.2.1", may_store=True)
    dicom_node_add(server, ae_title="LOOKER", host="localhost", may_query=True)
    instance = DicomListener(server, extra_env={"APERTURE_DICOM_ALLOW_ANY": "false"})
    yield instance
    instance.stop()


class TestAllowList:
    """APERTURE_DICOM_ALLOW_ANY=false: only known nodes, from their host."""

    def test_a_known_node_from_its_host_may_associate(self, strict, store_ae):
        started = _start_strict(strict)
        assert started.echo(called=store_ae, calling="KNOWN").returncode == 0

    def test_an_unknown_calling_ae_title_is_rejected(self, strict, store_ae):
        result = _start_strict(strict).echo(called=store_ae, calling="STRANGER")
        assert result.returncode != 0
        assert "Calling AE Title Not Recognized" in result.stderr + result.stdout

    def test_a_known_title_from_another_host_is_rejected(self, strict, store_ae):
        result = _start_strict(strict).echo(called=store_ae, calling="ELSEWHERE")
        assert result.returncode != 0
        assert "Calling AE Title Not Recognized" in result.stderr + result.stdout


    def test_a_node_that_may_not_store_is_offered_no_storage(self, strict, store_ae):
        started = _start_strict(strict)
        assert started.echo(called=store_ae, calling="LOOKER").returncode == 0
        result = started.storescu(DICOM_DIR / "ELE__CT_small.dcm", called=store_ae, calling="LOOKER")
        assert result.returncode != 0
        assert "No Acceptable Presentation Contexts" in result.stderr + result.stdout
        assert started.storescu(DICOM_DIR / "ELE__CT_small.dcm", called=store_ae, calling="KNOWN").returncode == 0


def _start_strict(listener: DicomListener) -> DicomListener:
    if listener.process is None:
        listener.start(echo_as="KNOWN")
    return listener


def test_serve_runs_the_listener_when_asked():
    """The embedded default: `manage.py serve` with APERTURE_DICOM_LISTEN=true answers C-ECHO on its port."""
    port = free_port()
    server = ApertureServer(extra_env={"APERTURE_DICOM_LISTEN": "true", "APERTURE_DICOM_PORT": str(port)}).start()
    try:
        wait_for_http(server.url + "/datastore")
        peer = DicomListener(server, port=port)
        wait_for(lambda: peer.echo().returncode == 0, timeout=20, what="C-ECHO to the embedded listener")
    finally:
        server.stop()


def test_allow_any_on_a_non_loopback_address_is_warned_about(server):
    listener = DicomListener(server, extra_env={"APERTURE_DICOM_HOST": "0.0.0.0", "APERTURE_DICOM_ALLOW_ANY": "true"})
    try:
        listener.start()
        assert "APERTURE_DICOM_ALLOW_ANY is true and the DICOM listener listens on 0.0.0.0" in listener.log()
    finally:
        listener.stop()
    quiet = DicomListener(server).start()  # loopback: no warning
    try:
        assert "APERTURE_DICOM_ALLOW_ANY is true" not in quiet.log()
    finally:
        quiet.stop()
