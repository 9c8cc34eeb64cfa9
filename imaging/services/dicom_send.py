"""Send to: a study or series of a data store sent to a known DICOM node with C-STORE, as a background task.

`dicom_send_start` checks who asks and what, records a SUBMITTED DicomSend and queues `dicom_send_run`, which
resolves the primary image sets' instances, sends them on one association (imaging.dimse.send) and records the
counts as they go (a row update per instance, so the admin's progress is live), then COMPLETED or FAILED.

Who may send. Sending copies patient data out of the archive to another system, beyond what reading it in the
viewer allows, so it takes both: the user may read the data store (`datastores_readable`: a superuser, or a
DatastoreGrant) and is staff (the role that manages the archive in the admin, where the DICOM nodes are defined).
A clinician with a grant but no staff flag reads studies and does not send them.

Audit: "StartDICOMSend" when it is asked for (by the user), "DICOMSendCompleted"/"DICOMSendFailed" when it ends,
with the send's id, the node's AE title and the counts; the study's UID is the event's subject, as for other
study-level events, never in a log line.

A replayed task (a crash between start and end) finds the send IN_PROGRESS and sends it again: a C-STORE of an
instance the node already holds is harmless, and the counts are reset for the new attempt.
"""
from __future__ import annotations

import logging
import traceback

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from imaging.dimse.outgoing import RetrieveRefused, RetrieveRequest, instances_resolve
from imaging.dimse.send import SendFailed, SendProgress, send_instances
from imaging.errors import AccessDenied, NotFound, ValidationFailed
from imaging.models import Datastore, DicomNode, DicomSend, SendStatus
from imaging.selectors import datastore_readable
from imaging.services.audit import audit_record
from imaging.storage import BlobStoreError
from imaging.tasks import enqueue, task

logger = logging.getLogger(__name__)


def dicom_send_allowed(*, user, datastore_id: str) -> bool:
    """Whether `user` may send the data store's studies to DICOM nodes (see the module docstring)."""
    return bool(user and getattr(user, "is_staff", False) and getattr(user, "is_active", False)
                and datastore_readable(user=user, datastore_id=datastore_id))


def dicom_send_nodes(*, user, datastore_id: str) -> list[DicomNode]:
    """The nodes `user` may send the data store's studies to: every known node, or none for a user who may not
    send (the study page then shows no "Send to")."""
    if not dicom_send_allowed(user=user, datastore_id=datastore_id):
        return []
    return list(DicomNode.objects.all())


def dicom_send_of(*, user, send_id: str, datastore_id: str, study_uid: str) -> DicomSend | None:
    """The user's own send of that study, for its progress on the study page; None when there is none."""
    if not send_id:
        return None
    return DicomSend.objects.filter(pk=send_id, datastore_id=datastore_id, study_uid=study_uid,
                                    requested_by=user).first()


def dicom_send_start(*, datastore_id: str, node_id: int, study_uid: str, series_uid: str | None = None,
                     user) -> DicomSend:
    """Queue the send of a study (or one of its series) to a node; AccessDenied for a user who may not send."""
    if not dicom_send_allowed(user=user, datastore_id=datastore_id):
        raise AccessDenied("Sending studies to DICOM nodes needs staff rights on a data store you can read")
    node = DicomNode.objects.filter(pk=node_id).first()
    if node is None:
        raise NotFound("No DICOM node has that id")
    if not study_uid:
        raise ValidationFailed("A study instance UID is required")
    datastore = Datastore.objects.get(pk=datastore_id)
    with transaction.atomic():
        send = DicomSend.objects.create(
            datastore=datastore, node=node, destination=f"{node.ae_title}@{node.host}:{node.port}"[:300],
            study_uid=study_uid, series_uid=series_uid or "", requested_by=user,
        )
        enqueue(dicom_send_run, send_id=send.id)
    audit_record(event_name="StartDICOMSend", user=user, datastore_id=datastore_id, study_uid=study_uid,
                 parameters={"sendId": send.id, "destination": node.ae_title,
                             "level": "SERIES" if series_uid else "STUDY"},
                 event_type="DicomNetwork", category="Data", read_only=True)
    return send


def _calling_ae_title(datastore: Datastore) -> str:
    return datastore.ae_title or settings.APERTURE_DICOM_AET


@task
def dicom_send_run(*, send_id: str) -> None:
    """Run one send: resolve, send, record progress and the outcome."""
    send = DicomSend.objects.select_related("node", "datastore").filter(pk=send_id).first()
    if send is None or send.status in (SendStatus.COMPLETED, SendStatus.FAILED):
        return
    DicomSend.objects.filter(pk=send.pk).update(status=SendStatus.IN_PROGRESS, started_at=timezone.now(),
                                                sent_instances=0, failed_instances=0, message="")
    try:
        counts = _send(send)
    except (SendFailed, RetrieveRefused, BlobStoreError) as e:
        _finish(send, SendStatus.FAILED, str(e), None)
        return
    except Exception as e:
        # The type and the stack, not the message: an exception's message may hold a UID (KeyError('<uid>')).
        logger.error("send %s failed on an unexpected error (%s)\n%s", send.pk, type(e).__name__,
                     "".join(traceback.format_tb(e.__traceback__)))
        _finish(send, SendStatus.FAILED, "The send failed on an unexpected error; see the server log", None)
        return
    if counts.failed:
        message = f"{counts.failed} of {counts.total} instances failed"
        _finish(send, SendStatus.FAILED if not counts.sent else SendStatus.COMPLETED, message, counts)
    else:
        message = f"{counts.warnings} instances stored with a warning" if counts.warnings else ""
        _finish(send, SendStatus.COMPLETED, message, counts)


def _send(send: DicomSend) -> SendProgress:
    if send.node is None:
        raise SendFailed("The DICOM node was removed")
    request = RetrieveRequest("SERIES" if send.series_uid else "STUDY", "", (send.study_uid,),
                              (send.series_uid,) if send.series_uid else (), ())
    refs = instances_resolve(datastore_id=send.datastore_id, request=request)
    if not refs:
        raise SendFailed("No instance of that study or series is in the data store")
    DicomSend.objects.filter(pk=send.pk).update(total_instances=len(refs))

    def progress(counts: SendProgress) -> None:
        DicomSend.objects.filter(pk=send.pk).update(sent_instances=counts.sent, failed_instances=counts.failed)

    return send_instances(node=send.node, instances=refs, calling_ae_title=_calling_ae_title(send.datastore),
                          progress=progress)


def _finish(send: DicomSend, status: str, message: str, counts: SendProgress | None) -> None:
    fields = {"status": status, "message": message[:2048], "ended_at": timezone.now()}
    if counts is not None:
        fields.update(total_instances=counts.total, sent_instances=counts.sent, failed_instances=counts.failed)
    DicomSend.objects.filter(pk=send.pk).update(**fields)
    send.refresh_from_db()
    audit_record(event_name="DICOMSendCompleted" if status == SendStatus.COMPLETED else "DICOMSendFailed",
                 user=send.requested_by, datastore_id=send.datastore_id, study_uid=send.study_uid,
                 parameters={"sendId": send.pk, "destination": send.destination.split("@")[0],
                             "total": send.total_instances, "sent": send.sent_instances,
                             "failed": send.failed_instances},
                 event_type="DicomNetwork", category="Data", read_only=True,
                 status_code=200 if status == SendStatus.COMPLETED else 500,
                 error_message="" if status == SendStatus.COMPLETED else message[:200])
