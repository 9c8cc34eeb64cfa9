"""The DICOM listener as dcmtk sees it: C-ECHO, association control by called and calling AE title, the listener
embedded in `manage.py serve`."""
from __future__ import annotations

import pytest

from tests.clients import imaging_client, wait_for
from tests.dimse import DicomListener, datastore_ae_set, dicom_node_add
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


@pytest.fixture(scope="module")
def strict(server, store_ae):
    """A listener with APERTURE_DICOM_ALLOW_ANY=false, started by the first test that needs it, as a known node (it
    refuses ECHOSCU)."""
    dicom_node_add(server, ae_title="KNOWN", host="127.0.0.1", may_store=True)
    dicom_node_add(server, ae_title="ELSEWHERE", host="192.0.2.1", may_store=True)
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
