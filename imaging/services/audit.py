"""The audit trail (SPEC 13.1): one append-only row per API or DICOMweb call, page view of patient data, frame
stream start and export. DICOM values never go into requestParameters or responseElements: they are replaced by
HIDDEN_DUE_TO_SECURITY_REASONS. The patient and study the event concerns are kept in their own indexed columns so
admins can search the trail by them."""
from __future__ import annotations

import contextvars
import functools
import ipaddress
import json
import logging
from typing import Any, Iterable

from django.conf import settings
from django.db import connection

from imaging.metrics import record_unrecorded_refusal
from imaging.models import AuditEvent, ImageSet
from imaging.sharedstate import SharedStateUnavailable, shared_state

logger = logging.getLogger(__name__)

HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
SENSITIVE_MEMBERS = {"searchCriteria", "updateImageSetMetadataUpdates", "copiableAttributes", "DICOMCopies",
                     "studyInstanceUID", "seriesInstanceUID", "sopInstanceUID", "study", "series", "sop"}
READ_PREFIXES = ("Get", "List", "Search")
DATA_EVENTS = {"GetImageFrame", "GetDICOMInstance", "SearchDICOMStudies", "SearchDICOMSeries",
               "SearchDICOMInstances"}
# Every DICOMweb action is a data event (SPEC 13.1), those added later included; the one API operation these
# prefixes also match is not.
DICOMWEB_PREFIXES = ("SearchDICOM", "GetDICOM", "StoreDICOM")
NOT_DICOMWEB = {"GetDICOMImportJob"}


def is_data_event(event_name: str) -> bool:
    return event_name in DATA_EVENTS or (event_name.startswith(DICOMWEB_PREFIXES) and event_name not in NOT_DICOMWEB)


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: HIDDEN if key in SENSITIVE_MEMBERS else redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return HIDDEN
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def client_ip(meta: dict[str, Any]) -> str | None:
    """The client's address: REMOTE_ADDR, or, when that is a trusted proxy, the nearest X-Forwarded-For hop that
    is not one. Proxies append the address they saw, so the left of the header is whatever the client wrote: it is
    read from the right, and a hop that is not an IP address ends the walk (login throttling counts failures
    under this address, so a client must not be able to choose it)."""
    remote = meta.get("REMOTE_ADDR") or None
    trusted = set(settings.APERTURE_TRUSTED_PROXIES)
    address = remote
    if remote in trusted:
        for hop in reversed((meta.get("HTTP_X_FORWARDED_FOR") or "").split(",")):
            hop = hop.strip()
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break
            address = hop
            if hop not in trusted:
                break
    return address


ANONYMOUS_WINDOW_SECONDS = 60


def anonymous_refusal_admit(*, address: str | None, per_address: int, total: int) -> bool:
    """Whether a refused call without valid credentials may still be written this minute: at most `per_address` for
    one client address and `total` for all of them. The rest are counted in /metrics only
    (aperture_imaging_audit_anonymous_unrecorded), so a flood of anonymous requests adds a bounded number of rows.

    The counts are the shared state's (imaging/sharedstate): with several web processes on Redis the bound holds for
    all of them together. Memory is bounded by `total` addresses a minute. When the shared state cannot be reached
    the row is written: a gap in the audit trail costs more than a few extra rows."""
    limits = [("audit-anonymous:total", total), (f"audit-anonymous:address:{address or '-'}", per_address)]
    try:
        return shared_state().admit_in_window(limits, window_seconds=ANONYMOUS_WINDOW_SECONDS)
    except SharedStateUnavailable:
        return True


def _is_anonymous_refusal(*, user, principal_arn: str, status_code: int, event_type: str) -> bool:
    """An API or DICOMweb call refused before any credentials were accepted (no key, a forged or expired
    signature): anybody can send these, as many as they like."""
    return (event_type == "AwsApiCall" and status_code >= 400 and not principal_arn
            and not getattr(user, "is_authenticated", False))


_subject_noted: contextvars.ContextVar[tuple[str, str, str, str] | None] = contextvars.ContextVar(
    "audit_subject_noted", default=None)


def audit_subject_note(*, datastore_id: str, image_set_id: str, patient_id: str, study_uid: str) -> None:
    """Tell the audit row of the call in progress the patient and study of the image set it read, so that
    `audit_record` need not query them again (GetImageFrame). Kept until the next `audit_record` of this context,
    which always takes it away, and used only for the same data store and image set."""
    _subject_noted.set((datastore_id, image_set_id, patient_id or "", study_uid or ""))


def _subject(datastore_id: str, image_set_id: str, noted: tuple[str, str, str, str] | None) -> tuple[str, str]:
    if noted is not None and noted[:2] == (datastore_id, image_set_id):
        return noted[2], noted[3]
    if not (datastore_id and image_set_id):
        return "", ""
    row = ImageSet.objects.filter(pk=image_set_id, datastore_id=datastore_id).values_list(
        "patient_id", "study_instance_uid").first()
    return row or ("", "")


def audit_record(*, event_name: str, user=None, request_id: str = "", principal_arn: str = "",
                 access_key_id: str = "", source_ip: str | None = None, user_agent: str = "",
                 datastore_id: str = "", image_set_id: str = "", patient_id: str = "", study_uid: str = "",
                 parameters: dict[str, Any] | None = None, response: Any = None, status_code: int = 200,
                 error_code: str = "", error_message: str = "", event_type: str = "AwsApiCall",
                 category: str | None = None, read_only: bool | None = None,
                 identity_type: str | None = None) -> None:
    """Append one event; a failure to audit is logged and never breaks the call being audited. Anonymous refusals
    are written within `anonymous_refusal_admit`'s budget and counted beyond it."""
    noted = _subject_noted.get()
    if noted is not None:
        _subject_noted.set(None)
    if category is None:
        category = "Data" if is_data_event(event_name) or event_type != "AwsApiCall" else "Management"
    if category == "Data" and event_type == "AwsApiCall" and not settings.APERTURE_AUDIT_DATA_EVENTS:
        return
    if _is_anonymous_refusal(user=user, principal_arn=principal_arn, status_code=status_code, event_type=event_type) \
            and not anonymous_refusal_admit(address=source_ip,
                                            per_address=settings.APERTURE_AUDIT_ANONYMOUS_PER_MINUTE,
                                            total=settings.APERTURE_AUDIT_ANONYMOUS_TOTAL_PER_MINUTE):
        record_unrecorded_refusal()
        return
    if not (patient_id or study_uid):
        patient_id, study_uid = _subject(datastore_id, image_set_id, noted)
    if read_only is None:
        read_only = event_name.startswith(READ_PREFIXES)
    try:
        _insert(AuditEvent(
            request_id=request_id, event_name=event_name, event_type=event_type, event_category=category,
            read_only=read_only, user=user if getattr(user, "is_authenticated", False) else None,
            username=getattr(user, "username", "") or "", principal_arn=principal_arn, access_key_id=access_key_id,
            identity_type=identity_type,
            source_ip=source_ip, user_agent=user_agent[:256], datastore_id=(datastore_id or "")[:32],
            image_set_id=(image_set_id or "")[:32], patient_id=(patient_id or "")[:64],
            study_instance_uid=(study_uid or "")[:64],
            request_parameters=redact(parameters or {}),
            response_elements=redact(response) if response is not None and not read_only else None,
            status_code=status_code, error_code=error_code, error_message=error_message[:2048],
        ))
    except Exception:
        logger.exception("could not write an audit event for %s", event_name)


def _insert(event: AuditEvent) -> None:
    """One INSERT of `event`, as Model.save would write it (each field's pre_save and database preparation), with
    the statement built once per database rather than by the ORM's compiler on every call: every signed call ends
    here, and compiling the INSERT cost more than SQLite took to run it. Audit events are only ever inserted (the
    model and the database triggers refuse changes), and no signal listens to them."""
    fields = AuditEvent._meta.concrete_fields
    values = [field.get_db_prep_save(field.pre_save(event, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(_insert_statement(connection.vendor), values)


@functools.lru_cache(maxsize=4)
def _insert_statement(vendor: str) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in AuditEvent._meta.concrete_fields)
    placeholders = ", ".join(["%s"] * len(AuditEvent._meta.concrete_fields))
    return f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({columns}) VALUES ({placeholders})"


def audit_as_json(event: AuditEvent) -> dict[str, Any]:
    """The CloudTrail-shaped record of an event."""
    record = {
        "eventVersion": "1.08", "eventID": str(event.event_id), "requestID": event.request_id,
        "eventTime": event.event_time.isoformat(), "awsRegion": settings.APERTURE_REGION,
        "recipientAccountId": settings.APERTURE_ACCOUNT_ID, "eventSource": event.event_source,
        "eventName": event.event_name, "eventType": event.event_type, "eventCategory": event.event_category,
        "managementEvent": event.event_category == "Management", "readOnly": event.read_only,
        "userIdentity": {"type": event.identity_type or "IAMUser", "principalId": event.username,
                         "arn": event.principal_arn, "accountId": settings.APERTURE_ACCOUNT_ID,
                         "accessKeyId": event.access_key_id},
        "sourceIPAddress": event.source_ip, "userAgent": event.user_agent,
        "requestParameters": event.request_parameters, "responseElements": event.response_elements,
        "datastoreId": event.datastore_id, "patientId": event.patient_id,
        "studyInstanceUID": event.study_instance_uid,
    }
    if event.error_code:
        record["errorCode"], record["errorMessage"] = event.error_code, event.error_message
    return record


def audit_export_lines(events: Iterable[AuditEvent]) -> Iterable[str]:
    for event in events:
        yield json.dumps(audit_as_json(event), default=str) + "\n"
