"""Admin pages for DICOM networking, driven through Django's test client as an admin: DICOM nodes (list, add, the
checks, C-ECHO against dcmtk's storescp and against a closed port), the data store's AE title, and the calling AE of
C-STORE import jobs."""
from __future__ import annotations

import pytest

from imaging.models import AuditEvent, Datastore, DicomNode, ImportJob
from tests import dcmtk
from tests.servers import free_port

pytestmark = pytest.mark.django_db


def node_form(**fields) -> dict:
    return {"ae_title": "PACS1", "host": "127.0.0.1", "port": "104", "description": "", **fields}


def messages_of(page) -> list[str]:
    return [str(message) for message in page.context["messages"]]


@pytest.fixture
def storescp(tmp_path):
    """dcmtk's storescp answering as STORESCP on a free loopback port."""
    with dcmtk.storescp(tmp_path, ae_title="STORESCP") as port:
        yield port


class TestDicomNodes:
    def test_pages_load_and_a_node_is_added_with_an_audit_row(self, admin_client):
        assert admin_client.get("/admin/imaging/dicomnode/").status_code == 200
        assert admin_client.get("/admin/imaging/dicomnode/add/").status_code == 200
        added = admin_client.post("/admin/imaging/dicomnode/add/",
                                  node_form(may_store="on", may_query="on", description="Main PACS"))
        assert added.status_code == 302, added.content[:2000]
        node = DicomNode.objects.get()
        assert (node.ae_title, node.port, node.may_store, node.may_query, node.may_retrieve) == (
            "PACS1", 104, True, True, False)
        listing = admin_client.get("/admin/imaging/dicomnode/").content.decode()
        assert "127.0.0.1:104" in listing and "store, query" in listing
        event = AuditEvent.objects.get(event_name="CreateDicomNode")
        assert event.username == "admin" and event.event_type == "AdminEvent"
        assert admin_client.get(f"/admin/imaging/dicomnode/{node.pk}/change/").status_code == 200

    @pytest.mark.parametrize("fields, error", [
        ({"ae_title": "BAD\\AE"}, "backslash"),
        ({"ae_title": "A" * 17}, "at most 16"),
        ({"port": "0"}, "greater than or equal to 1"),
        ({"port": "70000"}, "less than or equal to 65535"),
        ({"host": "a b"}, "host name or an IP address"),
    ], ids=["backslash", "long-title", "port-0", "port-70000", "space-in-host"])
    def test_invalid_values_are_refused_on_the_form(self, admin_client, fields, error):
        page = admin_client.post("/admin/imaging/dicomnode/add/", node_form(**fields))
        assert page.status_code == 200 and error in page.content.decode()
        assert not DicomNode.objects.exists()

    def test_a_duplicate_title_is_refused(self, admin_client):
        DicomNode.objects.create(ae_title="PACS1", host="10.0.0.1", port=104)
        page = admin_client.post("/admin/imaging/dicomnode/add/", node_form())
        assert page.status_code == 200 and "already exists" in page.content.decode()

    def test_edit_and_delete_go_through_the_services(self, admin_client):
        node = DicomNode.objects.create(ae_title="PACS1", host="10.0.0.1", port=104)
        changed = admin_client.post(f"/admin/imaging/dicomnode/{node.pk}/change/",
                                    node_form(host="10.0.0.2", port="11112", use_tls="on"))
        assert changed.status_code == 302
        node.refresh_from_db()
        assert (node.host, node.port, node.use_tls) == ("10.0.0.2", 11112, True)
        deleted = admin_client.post(f"/admin/imaging/dicomnode/{node.pk}/delete/", {"post": "yes"})
        assert deleted.status_code == 302 and not DicomNode.objects.exists()
        assert list(AuditEvent.objects.order_by("event_time").values_list("event_name", flat=True)) == [
            "UpdateDicomNode", "DeleteDicomNode"]

    def test_the_data_stores_it_may_call(self, admin_client, datastore):
        other = Datastore.objects.create(name="other store", status="ACTIVE")
        Datastore.objects.create(name="gone", status="DELETED")
        form = admin_client.get("/admin/imaging/dicomnode/add/").content.decode()
        assert "other store" in form and "gone" not in form
        added = admin_client.post("/admin/imaging/dicomnode/add/", node_form(datastores=[other.id]))
        assert added.status_code == 302, added.content[:2000]
        node = DicomNode.objects.get()
        assert list(node.datastores.values_list("id", flat=True)) == [other.id]
        assert AuditEvent.objects.get(event_name="CreateDicomNode").response_elements["datastores"] == [other.id]
        assert "other store" in admin_client.get("/admin/imaging/dicomnode/").content.decode()
        changed = admin_client.post(f"/admin/imaging/dicomnode/{node.pk}/change/", node_form())
        assert changed.status_code == 302 and not node.datastores.exists()
        assert AuditEvent.objects.get(event_name="UpdateDicomNode").response_elements["datastores"] == []

    def test_echo_action_against_storescp_and_a_closed_port(self, admin_client, storescp, settings):
        settings.APERTURE_DICOM_AET = "APERTURE"
        up = DicomNode.objects.create(ae_title="STORESCP", host="127.0.0.1", port=storescp)
        down = DicomNode.objects.create(ae_title="DOWN", host="127.0.0.1", port=free_port())
        page = admin_client.post("/admin/imaging/dicomnode/", {"action": "echo", "_selected_action": [up.pk]},
                                 follow=True)
        [message] = messages_of(page)
        assert message.startswith(f"C-ECHO to STORESCP at 127.0.0.1:{storescp} succeeded"), message
        page = admin_client.post("/admin/imaging/dicomnode/", {"action": "echo", "_selected_action": [down.pk]},
                                 follow=True)
        [message] = messages_of(page)
        assert message.startswith(f"C-ECHO to DOWN at 127.0.0.1:{down.port} failed: could not connect"), message
        outcomes = dict(AuditEvent.objects.filter(event_name="EchoDicomNode").values_list(
            "request_parameters__aeTitle", "status_code"))
        assert outcomes == {"STORESCP": 200, "DOWN": 400}

    def test_echo_button_on_the_node_page(self, admin_client, storescp):
        node = DicomNode.objects.create(ae_title="STORESCP", host="127.0.0.1", port=storescp)
        echo_url = f"/admin/imaging/dicomnode/{node.pk}/echo/"
        assert f'action="{echo_url}"'.encode() in admin_client.get(f"/admin/imaging/dicomnode/{node.pk}/change/").content
        assert admin_client.get(echo_url).status_code == 405  # an echo is a POST: it writes an audit row
        page = admin_client.post(echo_url, follow=True)
        assert page.redirect_chain[-1][0] == f"/admin/imaging/dicomnode/{node.pk}/change/"
        [message] = messages_of(page)
        assert message.startswith("C-ECHO to STORESCP") and "succeeded" in message


class TestDatastoreAETitle:
    def test_editable_and_listed(self, admin_client, datastore):
        page = admin_client.get(f"/admin/imaging/datastore/{datastore.id}/change/")
        assert page.status_code == 200 and 'name="ae_title"' in page.content.decode()
        saved = admin_client.post(f"/admin/imaging/datastore/{datastore.id}/change/",
                                  {"name": datastore.name, "ae_title": "WARD7"})
        assert saved.status_code == 302, saved.content[:2000]
        assert Datastore.objects.get(pk=datastore.id).ae_title == "WARD7"
        assert "WARD7" in admin_client.get("/admin/imaging/datastore/").content.decode()
        event = AuditEvent.objects.get(event_name="SetDatastoreAETitle")
        assert event.username == "admin" and event.datastore_id == datastore.id
        cleared = admin_client.post(f"/admin/imaging/datastore/{datastore.id}/change/",
                                    {"name": datastore.name, "ae_title": ""})
        assert cleared.status_code == 302 and Datastore.objects.get(pk=datastore.id).ae_title is None

    def test_invalid_taken_or_listener_titles_are_form_errors(self, admin_client, datastore, settings):
        other = Datastore.objects.create(name="other", status="ACTIVE", ae_title="TAKEN")
        url = f"/admin/imaging/datastore/{datastore.id}/change/"
        bad = admin_client.post(url, {"name": datastore.name, "ae_title": "BAD\\AE"})
        assert bad.status_code == 200 and "backslash" in bad.content.decode()
        taken = admin_client.post(url, {"name": datastore.name, "ae_title": "TAKEN"})
        assert taken.status_code == 200 and "already exists" in taken.content.decode()
        settings.APERTURE_DICOM_AET, settings.APERTURE_DICOM_DEFAULT_DATASTORE = "APERTURE", other.id
        listener = admin_client.post(url, {"name": datastore.name, "ae_title": "APERTURE"})
        assert listener.status_code == 200 and "APERTURE_DICOM_DEFAULT_DATASTORE" in listener.content.decode()
        assert Datastore.objects.get(pk=datastore.id).ae_title is None


def test_import_jobs_show_the_calling_ae_and_filter_by_source(admin_client, datastore):
    def job(**fields) -> ImportJob:
        return ImportJob.objects.create(datastore=datastore, data_access_role_arn="arn:aws:iam::123456789012:role/r",
                                        input_s3_uri="s3://in/", output_s3_uri="s3://out/", status="COMPLETED",
                                        **fields)

    cstore = job(name="from-ct", calling_ae_title="CT_SCANNER_1", calling_address="127.0.0.9")
    other = job(name="from-s3")
    listing = admin_client.get("/admin/imaging/importjob/").content.decode()
    assert "CT_SCANNER_1" in listing and "127.0.0.9" in listing and "C-STORE" in listing
    only_cstore = admin_client.get("/admin/imaging/importjob/?source=cstore").content.decode()
    assert cstore.id in only_cstore and other.id not in only_cstore
    only_other = admin_client.get("/admin/imaging/importjob/?source=other").content.decode()
    assert other.id in only_other and cstore.id not in only_other
    detail = admin_client.get(f"/admin/imaging/importjob/{cstore.id}/change/").content.decode()
    assert "Calling AE title" in detail and "CT_SCANNER_1" in detail and "127.0.0.9" in detail
