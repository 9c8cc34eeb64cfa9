"""DICOM networking configuration: the DICOM nodes Aperture knows (create, update, delete, C-ECHO) and the AE title
that picks each data store. `manage.py dicom_node`, `manage.py datastore_ae` and the admin all write through here,
so the rules (PS3.5 AE titles, ports 1..65535, unique titles) and the audit rows are the same from every door.

A node's `datastores` are the data stores whose AE titles it may call when APERTURE_DICOM_ALLOW_ANY is false; none
means every data store. They limit calling only: any node may be a C-MOVE destination or a Send to target.

Every change is audited as an "AdminEvent" in the Management category; AE titles, hosts and ports are
configuration, not patient data. The echo is a pynetdicom SCU with the calling AE title APERTURE_DICOM_AET; it never
raises for a node that is down or refuses: the result says what happened.
"""
from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from imaging.errors import Conflict, NotFound, ValidationFailed
from imaging.models import Datastore, DatastoreStatus, DicomNode, ae_title_validator
from imaging.services.audit import audit_record


# Fields a node may be created or updated with, and the permission flags among them.
NODE_FIELDS = ("ae_title", "host", "port", "description", "may_store", "may_query", "may_retrieve", "use_tls")
_FLAGS = ("may_store", "may_query", "may_retrieve", "use_tls")
# An echo from the admin page waits at most this long for each step (connect, associate, answer).
ECHO_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Actor:
    """Who made a change, for the audit row: the admin's user and address, or a management command."""

    user: Any = None
    source_ip: str | None = None
    user_agent: str = ""


COMMAND_LINE = Actor(user_agent="manage.py")


def ae_title_clean(value: str, *, field: str = "AE title") -> str:
    """An AE title as given, checked against PS3.5 (1 to 16 printable characters, no backslash, no leading or
    trailing space). Not stripped or upper-cased: the title is compared byte for byte at association."""
    try:
        ae_title_validator(value)
    except ValidationError as e:
        raise ValidationFailed(f"{field} {value!r}: {e.messages[0]}") from e
    return value


def _port_clean(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError) as e:
        raise ValidationFailed(f"Port {value!r} is not a number") from e
    if not 1 <= port <= 65535:
        raise ValidationFailed(f"Port {port} is outside 1..65535")
    return port


def _host_clean(value: Any) -> str:
    host = (value or "").strip()
    if not host:
        raise ValidationFailed("The host must not be empty")
    if len(host) > 255 or any(c.isspace() for c in host):
        raise ValidationFailed(f"Host {host!r} is not a host name or address")
    return host


def _node_fields_clean(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(NODE_FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown DICOM node fields: {', '.join(sorted(unknown))}")
    cleaned: dict[str, Any] = {}
    if "ae_title" in fields:
        cleaned["ae_title"] = ae_title_clean(fields["ae_title"])
    if "host" in fields:
        cleaned["host"] = _host_clean(fields["host"])
    if "port" in fields:
        cleaned["port"] = _port_clean(fields["port"])
    if "description" in fields:
        description = fields["description"] or ""
        if len(description) > 256:
            raise ValidationFailed("The description is longer than 256 characters")
        cleaned["description"] = description
    for flag in _FLAGS:
        if flag in fields:
            cleaned[flag] = bool(fields[flag])
    return cleaned


def _datastores_clean(datastore_ids: Iterable[str]) -> list[Datastore]:
    """The data stores a node may call, each named by id and not deleted; an empty list means every data store."""
    wanted = list(dict.fromkeys(str(datastore_id).strip() for datastore_id in datastore_ids))
    found = {datastore.id: datastore for datastore in Datastore.objects.filter(pk__in=wanted).exclude(
        status=DatastoreStatus.DELETED)}
    missing = [datastore_id for datastore_id in wanted if datastore_id not in found]
    if missing:
        raise NotFound(f"Datastore {', '.join(missing)} does not exist")
    return [found[datastore_id] for datastore_id in wanted]


def dicom_node_datastore_ids(node: DicomNode) -> list[str]:
    """The ids of the data stores the node may call, sorted; empty for every data store."""
    return sorted(node.datastores.values_list("id", flat=True))


def _node_summary(node: DicomNode) -> dict[str, Any]:
    return {"aeTitle": node.ae_title, "host": node.host, "port": node.port, "mayStore": node.may_store,
            "mayQuery": node.may_query, "mayRetrieve": node.may_retrieve, "useTls": node.use_tls,
            "datastores": dicom_node_datastore_ids(node)}


def _audit(*, event_name: str, actor: Actor, parameters: dict[str, Any], response: Any = None,
           datastore_id: str = "", error_code: str = "", error: str = "") -> None:
    audit_record(event_name=event_name, event_type="AdminEvent", category="Management", read_only=False,
                 user=actor.user, source_ip=actor.source_ip, user_agent=actor.user_agent,
                 datastore_id=datastore_id, parameters=parameters, response=response,
                 status_code=400 if error else 200, error_code=error_code,
                 error_message=error)


def dicom_node_create(*, actor: Actor = COMMAND_LINE, ae_title: str, host: str, port: int, description: str = "",
                      may_store: bool = False, may_query: bool = False, may_retrieve: bool = False,
                      use_tls: bool = False, datastore_ids: Iterable[str] = ()) -> DicomNode:
    """Add a node; `datastore_ids` limits the data stores it may call (none: every data store)."""
    cleaned = _node_fields_clean({"ae_title": ae_title, "host": host, "port": port, "description": description,
                                  "may_store": may_store, "may_query": may_query, "may_retrieve": may_retrieve,
                                  "use_tls": use_tls})
    try:
        with transaction.atomic():
            datastores = _datastores_clean(datastore_ids)
            if DicomNode.objects.filter(ae_title=cleaned["ae_title"]).exists():
                raise Conflict(f"A DICOM node with AE title {cleaned['ae_title']!r} already exists")
            node = DicomNode.objects.create(**cleaned)
            node.datastores.set(datastores)
    except IntegrityError as e:  # created meanwhile by another process
        raise Conflict(f"A DICOM node with AE title {cleaned['ae_title']!r} already exists") from e
    _audit(event_name="CreateDicomNode", actor=actor, parameters={"aeTitle": node.ae_title},
           response=_node_summary(node))
    return node


def dicom_node_get(*, ae_title: str) -> DicomNode:
    node = DicomNode.objects.filter(ae_title=ae_title).first()
    if node is None:
        raise NotFound(f"No DICOM node has AE title {ae_title!r}")
    return node


def dicom_node_update(*, actor: Actor = COMMAND_LINE, node_id: int, datastore_ids: Iterable[str] | None = None,
                      **fields: Any) -> DicomNode:
    """Change some of a node's fields (those given); renaming to a title another node has is a Conflict.
    `datastore_ids` replaces the data stores it may call (empty: every data store); None leaves them."""
    cleaned = _node_fields_clean(fields)
    try:
        with transaction.atomic():
            datastores = None if datastore_ids is None else _datastores_clean(datastore_ids)
            node = DicomNode.objects.select_for_update().filter(pk=node_id).first()
            if node is None:
                raise NotFound(f"DICOM node {node_id} does not exist")
            title = cleaned.get("ae_title", node.ae_title)
            if DicomNode.objects.filter(ae_title=title).exclude(pk=node_id).exists():
                raise Conflict(f"A DICOM node with AE title {title!r} already exists")
            before = node.ae_title
            for name, value in cleaned.items():
                setattr(node, name, value)
            node.save()
            if datastores is not None:
                node.datastores.set(datastores)
    except IntegrityError as e:
        raise Conflict(f"A DICOM node with AE title {cleaned.get('ae_title')!r} already exists") from e
    _audit(event_name="UpdateDicomNode", actor=actor, parameters={"aeTitle": before},
           response=_node_summary(node))
    return node


def dicom_node_delete(*, actor: Actor = COMMAND_LINE, node_id: int) -> None:
    """Remove a node. Its past sends keep their destination text (DicomSend.node becomes null)."""
    node = DicomNode.objects.filter(pk=node_id).first()
    if node is None:
        raise NotFound(f"DICOM node {node_id} does not exist")
    summary = _node_summary(node)
    node.delete()
    _audit(event_name="DeleteDicomNode", actor=actor, parameters={"aeTitle": summary["aeTitle"]}, response=summary)


@dataclass(frozen=True)
class EchoResult:
    ok: bool
    # Safe to show: the node, what happened, and how long it took.
    message: str
    status: int | None = None
    elapsed_ms: int = 0


def _tls_client_context() -> ssl.SSLContext:
    """A client context for DICOM TLS: the node's certificate is checked against APERTURE_DICOM_TLS_CA (or the
    system's CAs), and Aperture's own certificate is presented when one is configured."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.APERTURE_DICOM_TLS_CA or None)
    if settings.APERTURE_DICOM_TLS_CERT and settings.APERTURE_DICOM_TLS_KEY:
        context.load_cert_chain(settings.APERTURE_DICOM_TLS_CERT, settings.APERTURE_DICOM_TLS_KEY)
    return context


def dicom_node_echo(node: DicomNode, *, actor: Actor = COMMAND_LINE,
                    timeout_seconds: float = ECHO_TIMEOUT_SECONDS) -> EchoResult:
    """C-ECHO the node as an SCU, calling AE APERTURE_DICOM_AET; audited as EchoDicomNode."""
    from pynetdicom import AE, evt
    from pynetdicom.pdu_primitives import A_ASSOCIATE
    from pynetdicom.sop_class import Verification

    where = f"{node.ae_title} at {node.host}:{node.port}{' (TLS)' if node.use_tls else ''}"
    started = time.monotonic()
    ae = AE(ae_title=settings.APERTURE_DICOM_AET)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_seconds
    ae.connection_timeout = timeout_seconds
    status: int | None = None
    # pynetdicom logs a failed connect or a rejection and raises nothing: its events say what happened.
    connected: list[bool] = []
    rejections: list[str] = []

    def acse_received(event) -> None:
        primitive = event.primitive
        if isinstance(primitive, A_ASSOCIATE) and primitive.result not in (None, 0x00):
            rejections.append(str(primitive.reason_str))

    try:
        tls_args = (_tls_client_context(), node.host) if node.use_tls else None
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, tls_args=tls_args,
                             evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(True)),
                                           (evt.EVT_ACSE_RECV, acse_received)])
    except (OSError, ValueError, ssl.SSLError) as e:
        ok, message = False, f"C-ECHO to {where} failed: {e}"
    else:
        if assoc.is_established and not assoc.accepted_contexts:
            assoc.release()
            ok, message = False, f"C-ECHO to {where} failed: the node accepted no Verification context"
        elif assoc.is_established:
            try:
                answer = assoc.send_c_echo()
            finally:
                assoc.release()
            status = int(answer.Status) if answer and "Status" in answer else None
            ok = status == 0x0000
            if ok:
                message = f"C-ECHO to {where} succeeded"
            elif status is None:
                message = f"C-ECHO to {where} failed: no answer within {timeout_seconds:g} s"
            else:
                message = f"C-ECHO to {where} failed with status 0x{status:04X}"
        elif assoc.is_rejected:
            why = f" ({rejections[0]})" if rejections else ""
            ok, message = False, f"C-ECHO to {where} failed: the node rejected the association{why}"
        elif not connected:
            handshake = ", or the TLS handshake failed" if node.use_tls else ""
            ok, message = False, (f"C-ECHO to {where} failed: could not connect (refused, unreachable or no "
                                  f"answer within {timeout_seconds:g} s{handshake})")
        else:
            ok, message = False, f"C-ECHO to {where} failed: the association was aborted"
    finally:
        ae.shutdown()
    elapsed_ms = round((time.monotonic() - started) * 1000)
    if ok:
        message = f"{message} ({elapsed_ms} ms)"
    _audit(event_name="EchoDicomNode", actor=actor, parameters={"aeTitle": node.ae_title},
           response={"ok": ok, "status": status, "elapsedMs": elapsed_ms},
           error_code="" if ok else "EchoFailed", error="" if ok else message)
    return EchoResult(ok=ok, message=message, status=status, elapsed_ms=elapsed_ms)


def datastore_ae_title_check(*, datastore_id: str, ae_title: str) -> str:
    """The rules a data store's AE title must follow, short of uniqueness (which the write checks under a lock):
    PS3.5, and not APERTURE_DICOM_AET when APERTURE_DICOM_DEFAULT_DATASTORE names another data store (the listener's
    own title already goes there)."""
    ae_title = ae_title_clean(ae_title)
    default = settings.APERTURE_DICOM_DEFAULT_DATASTORE
    if ae_title == settings.APERTURE_DICOM_AET and default and default != datastore_id:
        raise Conflict(f"{ae_title!r} is the listener's own AE title (APERTURE_DICOM_AET), which goes to the "
                       f"data store {default} (APERTURE_DICOM_DEFAULT_DATASTORE)")
    return ae_title


def datastore_ae_title_set(*, actor: Actor = COMMAND_LINE, datastore_id: str, ae_title: str | None) -> Datastore:
    """Give a data store the AE title that DICOM nodes call it by, or none (`ae_title=None`).

    Titles are unique among data stores; see datastore_ae_title_check for the rest."""
    if ae_title is not None:
        ae_title = datastore_ae_title_check(datastore_id=datastore_id, ae_title=ae_title)
    try:
        with transaction.atomic():
            datastore = Datastore.objects.select_for_update().filter(pk=datastore_id).first()
            if datastore is None or datastore.status == DatastoreStatus.DELETED:
                raise NotFound(f"Datastore {datastore_id} does not exist")
            if ae_title is not None and Datastore.objects.filter(ae_title=ae_title).exclude(
                    pk=datastore_id).exists():
                raise Conflict(f"Another data store already has the AE title {ae_title!r}")
            before = datastore.ae_title
            datastore.ae_title = ae_title
            datastore.save(update_fields=["ae_title", "updated_at"])
    except IntegrityError as e:
        raise Conflict(f"Another data store already has the AE title {ae_title!r}") from e
    _audit(event_name="SetDatastoreAETitle", actor=actor, datastore_id=datastore_id,
           parameters={"datastoreId": datastore_id, "aeTitle": ae_title}, response={"previousAETitle": before})
    return datastore
