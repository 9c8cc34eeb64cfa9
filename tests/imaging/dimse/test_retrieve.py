"""The C-GET/C-MOVE handlers in process, driven as pynetdicom drives them (next() on the generator) with a stand-in
event: what they yield first, cancel, a peer that may not retrieve, and the audit event."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from pydicom.dataset import Dataset
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from imaging.dicom import uids
from imaging.dimse.peer import Peer
from imaging.dimse.retrieve import CANCEL, PENDING, handle_get, handle_move
from imaging.models import AuditEvent, DicomNode

pytestmark = pytest.mark.django_db(transaction=True)
CT = "1.2.840.10008.5.1.4.1.1.2"


class StandInAssociation:
    def __init__(self, peer: Peer) -> None:
        context = build_context(CT, [uids.EXPLICIT_LE])
        context._as_scu, context._as_scp = True, True
        self.accepted_contexts = [context]
        self.aperture_peer = peer
        self.bound: list = []

    def bind(self, event, handler) -> None:
        self.bound.append(handler)

    def unbind(self, event, handler) -> None:
        self.bound.remove(handler)


class StandInEvent:
    """What the handlers read of a pynetdicom event; `cancel_after` C-STOREs a C-CANCEL arrives."""

    def __init__(self, peer: Peer, *, cancel_after: int | None = None, move_destination: str = "",
                 model: str = StudyRootQueryRetrieveInformationModelGet, **keys) -> None:
        self.assoc = StandInAssociation(peer)
        self.request = SimpleNamespace(AffectedSOPClassUID=model)
        self.identifier = Dataset()
        for keyword, value in keys.items():
            setattr(self.identifier, keyword, value)
        self.move_destination = move_destination
        self.cancel_after, self.sent = cancel_after, 0

    @property
    def is_cancelled(self) -> bool:
        return self.cancel_after is not None and self.sent >= self.cancel_after


def _peer(archive, *, may_retrieve: bool = True) -> Peer:
    return Peer(datastore_id=archive.datastore.id, called_ae_title="RETR", calling_ae_title="GETTER",
                address="127.0.0.1", node_id=None, may_store=False, may_query=False, may_retrieve=may_retrieve)


def _drive(generator, event) -> list:
    yielded = []
    for item in generator:
        yielded.append(item)
        if isinstance(item, tuple) and item[0] == PENDING:
            event.sent += 1
    return yielded


def test_get_yields_the_count_then_datasets(archive):
    event = StandInEvent(_peer(archive), QueryRetrieveLevel="SERIES", SeriesInstanceUID=archive.series)
    yielded = _drive(handle_get(event), event)
    assert yielded[0] == 3
    assert [status for status, _ in yielded[1:]] == [PENDING] * 3
    assert [dataset.InstanceNumber for _, dataset in yielded[1:]] == [1, 2, 3]
    assert {dataset.file_meta.TransferSyntaxUID for _, dataset in yielded[1:]} == {uids.EXPLICIT_LE}
    assert event.assoc.bound == []  # the response counter is unbound at the end
    event_row = AuditEvent.objects.get(event_name="DICOMRetrieve")
    assert event_row.request_parameters["matched"] == 3 and event_row.request_parameters["level"] == "SERIES"
    assert archive.series not in str(event_row.request_parameters)


def test_get_cancel(archive):
    event = StandInEvent(_peer(archive), cancel_after=1, QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.study)
    yielded = _drive(handle_get(event), event)
    assert yielded[0] == 3 and yielded[1][0] == PENDING and yielded[2] == (CANCEL, None) and len(yielded) == 3


def test_get_refused_to_a_peer_that_may_not_retrieve(archive):
    event = StandInEvent(_peer(archive, may_retrieve=False), QueryRetrieveLevel="STUDY",
                         StudyInstanceUID=archive.study)
    assert _drive(handle_get(event), event) == [1, (0xC000, None)]


def test_move_unknown_destination(archive):
    event = StandInEvent(_peer(archive), move_destination="NOWHERE", QueryRetrieveLevel="STUDY",
                         StudyInstanceUID=archive.study)
    assert _drive(handle_move(event), event) == [(None, None)]
    assert AuditEvent.objects.get(event_name="DICOMRetrieve").error_code == "0xA801"


def test_move_offers_stored_and_uncompressed(archive):
    DicomNode.objects.create(ae_title="DEST", host="127.0.0.1", port=104)
    event = StandInEvent(_peer(archive), move_destination="DEST", QueryRetrieveLevel="STUDY",
                         StudyInstanceUID=archive.study)
    generator = handle_move(event)
    host, port, arguments = next(generator)
    assert (host, port) == ("127.0.0.1", 104)
    [context] = arguments["contexts"]
    assert (context.abstract_syntax, context.transfer_syntax) == (
        CT, [uids.HTJ2K_LOSSLESS_RPCL, uids.EXPLICIT_LE, uids.IMPLICIT_LE])
    assert next(generator) == 3
    generator.close()


@pytest.mark.parametrize("handler, model", [(handle_get, StudyRootQueryRetrieveInformationModelGet),
                                            (handle_move, StudyRootQueryRetrieveInformationModelMove)],
                         ids=["get", "move"])
def test_study_root_patient_level_is_refused_A900(archive, handler, model):
    DicomNode.objects.create(ae_title="DEST", host="127.0.0.1", port=104)
    event = StandInEvent(_peer(archive), move_destination="DEST", model=model, QueryRetrieveLevel="PATIENT",
                         PatientID=archive.generated[1].PatientID)
    yielded = _drive(handler(event), event)
    assert yielded[-1] == (0xA900, None)
    assert PENDING not in [item[0] for item in yielded if isinstance(item, tuple)]
    if handler is handle_move:  # the refusal's association goes to the loopback sink, not to the node
        assert yielded[0][:2] != ("127.0.0.1", 104)
    assert AuditEvent.objects.get(event_name="DICOMRetrieve").error_code == "0xA900"


def test_patient_root_patient_level_is_carried_out(archive):
    event = StandInEvent(_peer(archive), model=PatientRootQueryRetrieveInformationModelGet,
                         QueryRetrieveLevel="PATIENT", PatientID=archive.generated[1].PatientID)
    yielded = _drive(handle_get(event), event)
    assert yielded[0] >= 3 and all(status == PENDING for status, _ in yielded[1:])


def test_an_instance_gone_between_resolve_and_build_fails_alone_and_is_not_logged(archive, monkeypatch, caplog):
    from imaging.dimse import outgoing

    event = StandInEvent(_peer(archive), QueryRetrieveLevel="SERIES", SeriesInstanceUID=archive.series)
    generator = handle_get(event)
    assert next(generator) == 3
    gone = archive.generated[2].SOPInstanceUID
    document_of = outgoing.image_set_document

    def changed_document(image_set):
        document = document_of(image_set)
        document["Study"]["Series"][archive.series]["Instances"].pop(gone)
        return document

    monkeypatch.setattr(outgoing, "image_set_document", changed_document)
    with caplog.at_level(logging.DEBUG):
        yielded = _drive(generator, event)
    assert [dataset.SOPInstanceUID for _, dataset in yielded] == [
        archive.generated[1].SOPInstanceUID, gone, archive.generated[3].SOPInstanceUID]
    assert "PixelData" in yielded[0][1] and "PixelData" in yielded[2][1]
    assert "TransferSyntaxUID" not in getattr(yielded[1][1], "file_meta", {})  # the stub: a failed sub-operation
    assert "KeyError" in caplog.text and gone not in caplog.text and archive.series not in caplog.text
