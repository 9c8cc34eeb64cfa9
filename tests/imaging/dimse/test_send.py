"""Send to: a study or series sent with C-STORE to a real dcmtk storescp (which accepts only uncompressed syntaxes,
so every HTJ2K instance is transcoded): the files arrive with the originals' pixels, bit for bit, the DicomSend
records the counts, and the audit has the start and the end. Who may send."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from imaging.dimse.outgoing import RetrieveRequest, instances_resolve
from imaging.dimse.send import send_instances, status_kind
from imaging.errors import AccessDenied
from imaging.models import AuditEvent, DicomNode, DicomSend, SendStatus
from imaging.services.dicom_send import dicom_send_allowed, dicom_send_start
from tests import personas
from tests.servers import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


def _node(scp, **fields) -> DicomNode:
    return DicomNode.objects.create(ae_title=scp.ae_title, host="127.0.0.1", port=scp.port, **fields)


def _staff_admin(datastore):
    user = personas.admin("sender")
    assert dicom_send_allowed(user=user, datastore_id=datastore.id)
    return user


class TestSendInstances:
    def test_series_arrives_transcoded_bit_exact(self, archive, storescp):
        refs = instances_resolve(datastore_id=archive.datastore.id,
                                 request=RetrieveRequest("SERIES", "", (), (archive.series,), ()))
        seen = []
        counts = send_instances(node=_node(storescp), instances=refs, calling_ae_title="APERTURE",
                                progress=lambda c: seen.append(c.sent))
        assert (counts.total, counts.sent, counts.failed) == (3, 3, 0)
        assert seen == [1, 2, 3]
        received = storescp.received()
        assert set(received) == {d.SOPInstanceUID for d in archive.generated.values()}
        for sop_uid, dataset in received.items():
            assert dataset.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
            assert np.array_equal(dataset.pixel_array, archive.original(sop_uid).pixel_array)

    def test_lossy_original_fails_alone(self, archive, storescp):
        jpeg, ct = archive.sources["jpeg"], archive.sources["ct"]
        refs = instances_resolve(datastore_id=archive.datastore.id, request=RetrieveRequest(
            "STUDY", "", (jpeg.StudyInstanceUID, ct.StudyInstanceUID), (), ()))
        lossy = [ref for ref in refs if ref.sop_uid == jpeg.SOPInstanceUID]
        assert lossy
        counts = send_instances(node=_node(storescp), instances=refs, calling_ae_title="APERTURE")
        assert counts.failed == len(lossy) and counts.sent == len(refs) - len(lossy)
        assert ct.SOPInstanceUID in storescp.received()

    def test_an_instance_gone_between_resolve_and_build_fails_alone_and_is_not_logged(self, archive, storescp,
                                                                                   monkeypatch, caplog):
        from imaging.dimse import outgoing

        refs = instances_resolve(datastore_id=archive.datastore.id,
                                 request=RetrieveRequest("SERIES", "", (), (archive.series,), ()))
        gone = archive.generated[2].SOPInstanceUID
        document_of = outgoing.image_set_document

        def changed_document(image_set):
            document = document_of(image_set)
            document["Study"]["Series"][archive.series]["Instances"].pop(gone)
            return document

        monkeypatch.setattr(outgoing, "image_set_document", changed_document)
        with caplog.at_level(logging.DEBUG):
            counts = send_instances(node=_node(storescp), instances=refs, calling_ae_title="APERTURE")
        assert (counts.sent, counts.failed) == (2, 1)
        assert set(storescp.received()) == {archive.generated[1].SOPInstanceUID, archive.generated[3].SOPInstanceUID}
        assert "KeyError" in caplog.text and gone not in caplog.text

    def test_statuses(self):
        assert [status_kind(s) for s in (0, 0xB000, 0x0107, 0xA700, 0xC000)] == [
            "success", "warning", "warning", "failure", "failure"]


class TestSendTo:
    def test_study_sent_completed_with_counts_and_audit(self, archive, storescp):
        user = _staff_admin(archive.datastore)
        node = _node(storescp)
        send = dicom_send_start(datastore_id=archive.datastore.id, node_id=node.pk, study_uid=archive.study,
                                user=user)
        send.refresh_from_db()  # eager tasks: it ran on commit
        assert send.status == SendStatus.COMPLETED, send.message
        assert (send.total_instances, send.sent_instances, send.failed_instances) == (3, 3, 0)
        assert send.started_at and send.ended_at and send.destination.startswith("DEST@")
        received = storescp.received()
        for sop_uid, dataset in received.items():
            assert np.array_equal(dataset.pixel_array, archive.original(sop_uid).pixel_array)
        assert len(received) == 3
        events = {e.event_name: e for e in AuditEvent.objects.filter(datastore_id=archive.datastore.id,
                                                                     event_name__contains="DICOMSend")}
        assert {"StartDICOMSend", "DICOMSendCompleted"} <= set(events)
        assert events["DICOMSendCompleted"].study_instance_uid == archive.study
        assert events["StartDICOMSend"].username == "sender"

    def test_series(self, archive, storescp):
        mr = archive.sources["mr"]
        send = dicom_send_start(datastore_id=archive.datastore.id, node_id=_node(storescp).pk,
                                study_uid=mr.StudyInstanceUID, series_uid=mr.SeriesInstanceUID,
                                user=_staff_admin(archive.datastore))
        send.refresh_from_db()
        assert (send.status, send.sent_instances) == (SendStatus.COMPLETED, 1)
        assert np.array_equal(storescp.received()[mr.SOPInstanceUID].pixel_array, mr.pixel_array)

    def test_unreachable_node_fails_with_message(self, archive):
        node = DicomNode.objects.create(ae_title="NOBODY", host="127.0.0.1", port=free_port())
        send = dicom_send_start(datastore_id=archive.datastore.id, node_id=node.pk, study_uid=archive.study,
                                user=_staff_admin(archive.datastore))
        send.refresh_from_db()
        assert send.status == SendStatus.FAILED and "NOBODY" in send.message
        assert AuditEvent.objects.filter(event_name="DICOMSendFailed").exists()

    def test_unknown_study_fails(self, archive, storescp):
        send = dicom_send_start(datastore_id=archive.datastore.id, node_id=_node(storescp).pk, study_uid="1.2.3",
                                user=_staff_admin(archive.datastore))
        send.refresh_from_db()
        assert send.status == SendStatus.FAILED and "No instance" in send.message

    def test_an_unexpected_error_is_logged_without_its_message(self, archive, storescp, monkeypatch, caplog):
        from imaging.services import dicom_send

        def broken(send):
            raise KeyError(archive.study)

        monkeypatch.setattr(dicom_send, "_send", broken)
        with caplog.at_level(logging.DEBUG):
            send = dicom_send_start(datastore_id=archive.datastore.id, node_id=_node(storescp).pk,
                                    study_uid=archive.study, user=_staff_admin(archive.datastore))
        send.refresh_from_db()
        assert send.status == SendStatus.FAILED
        assert "KeyError" in caplog.text and archive.study not in caplog.text

    def test_who_may_send(self, archive, storescp):
        node = _node(storescp)
        clinician = personas.clinician(archive.datastore, username="reader")
        assert not dicom_send_allowed(user=clinician, datastore_id=archive.datastore.id)
        staff_elsewhere = personas.user("staff-elsewhere", staff=True)
        assert not dicom_send_allowed(user=staff_elsewhere, datastore_id=archive.datastore.id)
        staff_granted = personas.user("staff-granted", staff=True, grants=[archive.datastore])
        assert dicom_send_allowed(user=staff_granted, datastore_id=archive.datastore.id)
        for user in (clinician, staff_elsewhere, personas.outsider()):
            with pytest.raises(AccessDenied):
                dicom_send_start(datastore_id=archive.datastore.id, node_id=node.pk, study_uid=archive.study,
                                 user=user)
        assert not DicomSend.objects.exists()


def test_send_over_dicom_tls(archive, settings, tmp_path):
    """A node with use_tls: storescp speaking TLS and requiring a client certificate signed by the CA; Aperture
    verifies the node against APERTURE_DICOM_TLS_CA and presents APERTURE_DICOM_TLS_CERT/_KEY."""
    from tests.dimse_archive import StoreSCP
    from tests.imaging.dimse.test_tls_live import issue, write_pem

    ca_name, ca_key, ca_cert = issue("Aperture test CA", ca=True)
    _, ca_path = write_pem(tmp_path, "ca", ca_key, ca_cert)
    _, node_key, node_cert = issue("node", issuer=(ca_name, ca_key))
    node_key_path, node_cert_path = write_pem(tmp_path, "node", node_key, node_cert)
    _, own_key, own_cert = issue("aperture", issuer=(ca_name, ca_key))
    own_key_path, own_cert_path = write_pem(tmp_path, "aperture", own_key, own_cert)
    settings.APERTURE_DICOM_TLS_CA = str(ca_path)
    settings.APERTURE_DICOM_TLS_CERT, settings.APERTURE_DICOM_TLS_KEY = str(own_cert_path), str(own_key_path)
    scp = StoreSCP(tmp_path / "received", ae_title="TLSDEST",
                   tls=("+tls", str(node_key_path), str(node_cert_path), "+cf", str(ca_path)))
    try:
        node = DicomNode.objects.create(ae_title="TLSDEST", host="127.0.0.1", port=scp.port, use_tls=True)
        refs = instances_resolve(datastore_id=archive.datastore.id,
                                 request=RetrieveRequest("SERIES", "", (), (archive.series,), ()))
        counts = send_instances(node=node, instances=refs, calling_ae_title="APERTURE")
        assert (counts.sent, counts.failed) == (3, 0)
        for sop_uid, dataset in scp.received().items():
            assert np.array_equal(dataset.pixel_array, archive.original(sop_uid).pixel_array)
    finally:
        scp.stop()
