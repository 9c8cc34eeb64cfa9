"""`manage.py datastore_ae` and `manage.py dicom_node`, called in process: what they write, what they refuse (a
CommandError, so a non-zero exit), and the audit rows they leave."""
from __future__ import annotations

import json
import subprocess
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from imaging.models import AuditEvent, Datastore, DicomNode
from tests import dcmtk
from tests.servers import free_port

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


class TestDatastoreAE:
    def test_sets_and_clears_the_title_with_an_audit_row_each(self, datastore):
        run("datastore_ae", "--datastore", datastore.id, "--ae-title", "WARD7")
        assert Datastore.objects.get(pk=datastore.id).ae_title == "WARD7"
        run("datastore_ae", "--datastore", datastore.id, "--clear")
        assert Datastore.objects.get(pk=datastore.id).ae_title is None
        events = AuditEvent.objects.filter(event_name="SetDatastoreAETitle").order_by("event_time")
        assert [e.request_parameters["aeTitle"] for e in events] == ["WARD7", None]
        assert {e.datastore_id for e in events} == {datastore.id}
        assert all(e.event_category == "Management" and not e.read_only for e in events)
        assert events[1].response_elements == {"previousAETitle": "WARD7"}

    @pytest.mark.parametrize("title, rule", [
        ("A" * 17, "1 to 16"), ("BACK\\SLASH", "backslash"), (" LEADING", "leading"), ("", "1 to 16"),
        ("TAB\tIN", "printable"),
    ], ids=["too-long", "backslash", "leading-space", "empty", "control-character"])
    def test_refuses_titles_that_break_ps3_5(self, datastore, title, rule):
        with pytest.raises(CommandError, match=rule):
            run("datastore_ae", "--datastore", datastore.id, "--ae-title", title)
        assert Datastore.objects.get(pk=datastore.id).ae_title is None
        assert not AuditEvent.objects.filter(event_name="SetDatastoreAETitle").exists()

    def test_titles_are_unique_among_data_stores(self, datastore):
        other = Datastore.objects.create(name="other", status="ACTIVE")
        run("datastore_ae", "--datastore", datastore.id, "--ae-title", "WARD7")
        with pytest.raises(CommandError, match="Another data store already has the AE title 'WARD7'"):
            run("datastore_ae", "--datastore", other.id, "--ae-title", "WARD7")
        run("datastore_ae", "--datastore", datastore.id, "--ae-title", "WARD7")  # its own title again is fine
        assert Datastore.objects.get(pk=other.id).ae_title is None

    def test_the_listener_title_is_refused_when_it_goes_to_another_default(self, datastore, settings):
        other = Datastore.objects.create(name="other", status="ACTIVE")
        settings.APERTURE_DICOM_AET = "APERTURE"
        settings.APERTURE_DICOM_DEFAULT_DATASTORE = other.id
        with pytest.raises(CommandError, match="APERTURE_DICOM_DEFAULT_DATASTORE"):
            run("datastore_ae", "--datastore", datastore.id, "--ae-title", "APERTURE")
        run("datastore_ae", "--datastore", other.id, "--ae-title", "APERTURE")  # the default itself may have it
        assert Datastore.objects.get(pk=other.id).ae_title == "APERTURE"

    def test_unknown_or_deleted_data_store(self, datastore):
        with pytest.raises(CommandError, match="does not exist"):
            run("datastore_ae", "--datastore", "0" * 32, "--ae-title", "X")
        Datastore.objects.filter(pk=datastore.id).update(status="DELETED")
        with pytest.raises(CommandError, match="does not exist"):
            run("datastore_ae", "--datastore", datastore.id, "--ae-title", "X")

    def test_needs_a_title_or_clear_not_both(self, datastore):
        with pytest.raises(CommandError):
            run("datastore_ae", "--datastore", datastore.id)
        with pytest.raises(CommandError):
            run("datastore_ae", "--datastore", datastore.id, "--ae-title", "X", "--clear")


class TestDicomNode:
    def add(self, title: str = "PACS1", *extra: str) -> str:
        return run("dicom_node", "add", "--ae-title", title, "--host", "10.0.0.5", "--port", "104", *extra)

    def test_add_list_update_remove(self):
        self.add("PACS1", "--store", "--query", "--description", "Main PACS")
        self.add("CT01", "--retrieve", "--tls")
        listed = json.loads(run("dicom_node", "list", "--json"))
        assert listed == [
            {"aeTitle": "CT01", "host": "10.0.0.5", "port": 104, "description": "", "mayStore": False,
             "mayQuery": False, "mayRetrieve": True, "useTls": True, "datastores": []},
            {"aeTitle": "PACS1", "host": "10.0.0.5", "port": 104, "description": "Main PACS", "mayStore": True,
             "mayQuery": True, "mayRetrieve": False, "useTls": False, "datastores": []},
        ]
        assert "PACS1\t10.0.0.5:104\tstore,query\tplain\tMain PACS" in run("dicom_node", "list")
        run("dicom_node", "update", "--ae-title", "PACS1", "--port", "11112", "--no-store", "--retrieve",
            "--new-ae-title", "PACS2")
        node = DicomNode.objects.get(ae_title="PACS2")
        assert (node.port, node.may_store, node.may_query, node.may_retrieve) == (11112, False, True, True)
        assert node.description == "Main PACS"  # untouched: not given
        run("dicom_node", "remove", "--ae-title", "PACS2")
        assert list(DicomNode.objects.values_list("ae_title", flat=True)) == ["CT01"]
        names = list(AuditEvent.objects.order_by("event_time").values_list("event_name", flat=True))
        assert names == ["CreateDicomNode", "CreateDicomNode", "UpdateDicomNode", "DeleteDicomNode"]
        update = AuditEvent.objects.get(event_name="UpdateDicomNode")
        assert update.request_parameters == {"aeTitle": "PACS1"}
        assert update.response_elements["aeTitle"] == "PACS2" and update.user_agent == "manage.py dicom_node update"

    @pytest.mark.parametrize("args, rule", [
        (["--ae-title", "A" * 17, "--host", "h", "--port", "104"], "1 to 16"),
        (["--ae-title", "BAD\\AE", "--host", "h", "--port", "104"], "backslash"),
        (["--ae-title", "OK", "--host", "h", "--port", "0"], "outside 1..65535"),
        (["--ae-title", "OK", "--host", "h", "--port", "65536"], "outside 1..65535"),
        (["--ae-title", "OK", "--host", "  ", "--port", "104"], "host must not be empty"),
        (["--ae-title", "OK", "--host", "a b", "--port", "104"], "not a host name"),
    ], ids=["long-title", "backslash", "port-0", "port-65536", "empty-host", "space-in-host"])
    def test_add_refuses_bad_values(self, args, rule):
        with pytest.raises(CommandError, match=rule):
            run("dicom_node", "add", *args)
        assert not DicomNode.objects.exists() and not AuditEvent.objects.exists()

    def test_titles_are_unique(self):
        self.add("PACS1")
        self.add("PACS2")
        with pytest.raises(CommandError, match="already exists"):
            self.add("PACS1")
        with pytest.raises(CommandError, match="already exists"):
            run("dicom_node", "update", "--ae-title", "PACS2", "--new-ae-title", "PACS1")
        assert DicomNode.objects.count() == 2

    def test_data_stores_it_may_call(self, datastore):
        other = Datastore.objects.create(name="other", status="ACTIVE")
        self.add("PACS1", "--query", "--datastore", datastore.id, "--datastore", other.id)
        node = DicomNode.objects.get(ae_title="PACS1")
        assert json.loads(run("dicom_node", "list", "--json"))[0]["datastores"] == sorted([datastore.id, other.id])
        run("dicom_node", "update", "--ae-title", "PACS1", "--datastore", other.id)
        assert list(node.datastores.values_list("id", flat=True)) == [other.id]
        run("dicom_node", "update", "--ae-title", "PACS1", "--port", "11112")  # the list stays when not given
        assert list(node.datastores.values_list("id", flat=True)) == [other.id]
        run("dicom_node", "update", "--ae-title", "PACS1", "--all-datastores")
        assert not node.datastores.exists()
        update = AuditEvent.objects.filter(event_name="UpdateDicomNode").order_by("event_time").first()
        assert update.response_elements["datastores"] == [other.id]

    def test_data_stores_must_exist(self, datastore):
        with pytest.raises(CommandError, match=f"Datastore {'0' * 32} does not exist"):
            self.add("PACS1", "--datastore", "0" * 32)
        assert not DicomNode.objects.exists() and not AuditEvent.objects.exists()
        self.add("PACS1")
        Datastore.objects.filter(pk=datastore.id).update(status="DELETED")
        with pytest.raises(CommandError, match="does not exist"):
            run("dicom_node", "update", "--ae-title", "PACS1", "--datastore", datastore.id)
        with pytest.raises(CommandError):
            run("dicom_node", "update", "--ae-title", "PACS1", "--datastore", datastore.id, "--all-datastores")

    def test_unknown_nodes_and_empty_updates(self):
        with pytest.raises(CommandError, match="No DICOM node has AE title 'NOPE'"):
            run("dicom_node", "remove", "--ae-title", "NOPE")
        with pytest.raises(CommandError, match="No DICOM node"):
            run("dicom_node", "update", "--ae-title", "NOPE", "--port", "1")
        self.add("PACS1")
        with pytest.raises(CommandError, match="Nothing to change"):
            run("dicom_node", "update", "--ae-title", "PACS1")
        with pytest.raises(CommandError, match="outside"):
            run("dicom_node", "update", "--ae-title", "PACS1", "--port", "70000")

    def test_echo_of_a_closed_port_fails_with_a_clear_message(self):
        run("dicom_node", "add", "--ae-title", "DOWN", "--host", "127.0.0.1", "--port", str(free_port()))
        with pytest.raises(CommandError, match="C-ECHO to DOWN at 127.0.0.1:.* failed: could not connect"):
            run("dicom_node", "echo", "--ae-title", "DOWN")
        event = AuditEvent.objects.get(event_name="EchoDicomNode")
        assert event.error_code == "EchoFailed" and event.response_elements["ok"] is False


@pytest.fixture
def tls_storescp(tmp_path):
    """dcmtk's storescp speaking DICOM TLS as TLSSCP with a self-signed certificate for 127.0.0.1, which it also
    trusts for client certificates; yields (port, certificate, key)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    with dcmtk.storescp(tmp_path, ae_title="TLSSCP", options=("+tls", str(key), str(cert), "+cf", str(cert))) as port:
        yield port, cert, key


def test_echo_over_dicom_tls_checks_the_node_certificate(tls_storescp, settings):
    port, cert, key = tls_storescp
    settings.APERTURE_DICOM_TLS_CERT, settings.APERTURE_DICOM_TLS_KEY = str(cert), str(key)
    run("dicom_node", "add", "--ae-title", "TLSSCP", "--host", "127.0.0.1", "--port", str(port), "--tls")
    settings.APERTURE_DICOM_TLS_CA = str(cert)
    answer = run("dicom_node", "echo", "--ae-title", "TLSSCP")
    assert f"C-ECHO to TLSSCP at 127.0.0.1:{port} (TLS) succeeded" in answer
    settings.APERTURE_DICOM_TLS_CA = None  # the node's self-signed certificate is then not trusted
    with pytest.raises(CommandError, match="TLS handshake failed"):
        run("dicom_node", "echo", "--ae-title", "TLSSCP")


def test_echo_says_why_a_node_rejected_the_association():
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    scp = AE(ae_title="RIGHT")
    scp.require_called_aet = True
    scp.add_supported_context(Verification)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False)
    try:
        run("dicom_node", "add", "--ae-title", "WRONG", "--host", "127.0.0.1", "--port", str(port))
        with pytest.raises(CommandError, match=r"rejected the association \(Called AE title not recognised\)"):
            run("dicom_node", "echo", "--ae-title", "WRONG")
    finally:
        server.shutdown()
