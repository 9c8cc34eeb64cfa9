"""Send to, from the pages: the form on the viewer's study page (shown to staff who may read the data store, when
a node is configured), the image set admin's "Send to DICOM node…" action and the DICOM sends admin."""
from __future__ import annotations

import numpy as np
import pytest

from imaging.models import DicomNode, DicomSend, ImageSet, SendStatus
from tests import personas

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


def _study_page(archive) -> str:
    return f"/studies/{archive.datastore.id}/{archive.study}/"


class TestStudyPage:
    def test_form_shown_only_to_senders_when_a_node_exists(self, client, archive):
        sender = personas.user("sender", staff=True, grants=[archive.datastore])
        client.force_login(sender)
        assert b'id="send-to"' not in client.get(_study_page(archive)).content  # no node yet
        DicomNode.objects.create(ae_title="PACS", host="127.0.0.1", port=104, description="the PACS")
        page = client.get(_study_page(archive)).content.decode()
        assert 'id="send-to"' in page and "PACS · the PACS" in page
        client.force_login(personas.clinician(archive.datastore, username="reader"))
        page = client.get(_study_page(archive))
        assert page.status_code == 200 and b'id="send-to"' not in page.content
        response = client.post(f"{_study_page(archive)}send/", {"node": DicomNode.objects.get().pk})
        assert response.status_code == 404 and not DicomSend.objects.exists()

    def test_send_from_the_page(self, client, archive, storescp):
        node = DicomNode.objects.create(ae_title=storescp.ae_title, host="127.0.0.1", port=storescp.port)
        client.force_login(personas.admin("sender"))
        response = client.post(f"{_study_page(archive)}send/", {"node": node.pk, "series": ""})
        assert response.status_code == 302 and "?sent=" in response["Location"]
        send = DicomSend.objects.get()
        assert (send.status, send.sent_instances, send.total_instances) == (SendStatus.COMPLETED, 3, 3)
        page = client.get(response["Location"]).content.decode()
        assert "COMPLETED, 3/3 sent" in page
        for sop_uid, dataset in storescp.received().items():
            assert np.array_equal(dataset.pixel_array, archive.original(sop_uid).pixel_array)

    def test_bad_node_goes_back_with_an_error(self, client, archive):
        client.force_login(personas.admin("sender"))
        response = client.post(f"{_study_page(archive)}send/", {"node": "x"})
        assert response.status_code == 302 and "send_error=" in response["Location"]
        response = client.post(f"{_study_page(archive)}send/", {"node": "999"})
        assert response.status_code == 302 and "send_error=" in response["Location"]


class TestAdmin:
    def test_send_action_intermediate_page_and_sends(self, client, archive, storescp):
        node = DicomNode.objects.create(ae_title=storescp.ae_title, host="127.0.0.1", port=storescp.port)
        client.force_login(personas.admin("admin"))
        image_set = ImageSet.objects.get(datastore=archive.datastore, series_instance_uid=archive.series,
                                         is_primary=True)
        changelist = "/admin/imaging/imageset/"
        page = client.post(changelist, {"action": "send_to_node", "_selected_action": [image_set.pk]})
        assert page.status_code == 200 and b"Send to a DICOM node" in page.content
        assert storescp.ae_title.encode() in page.content
        response = client.post(changelist, {"action": "send_to_node", "_selected_action": [image_set.pk],
                                            "node": node.pk, "send": "Send"})
        assert response.status_code == 302 and response["Location"].endswith("/admin/imaging/dicomsend/")
        send = DicomSend.objects.get()
        assert send.series_uid == archive.series and send.status == SendStatus.COMPLETED
        listing = client.get("/admin/imaging/dicomsend/")
        assert listing.status_code == 200 and b"3/3 sent" in listing.content
        assert client.get(f"/admin/imaging/dicomsend/{send.pk}/change/").status_code == 200
        assert len(storescp.received()) == 3

    def test_action_without_nodes_says_so(self, client, archive):
        client.force_login(personas.admin("admin"))
        image_set = ImageSet.objects.filter(datastore=archive.datastore).first()
        response = client.post("/admin/imaging/imageset/", {"action": "send_to_node",
                                                            "_selected_action": [image_set.pk]}, follow=True)
        assert b"No DICOM node is configured" in response.content
