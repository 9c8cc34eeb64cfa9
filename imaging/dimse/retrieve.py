"""C-GET and C-MOVE SCP: the instances a retrieve identifier names, sent back on the same association (C-GET) or to
a known DICOM node (C-MOVE), with pynetdicom doing the C-STORE sub-operations and their counts.

Both handlers are generators, as pynetdicom asks: C-MOVE yields the destination (host, port, association
arguments), then the number of sub-operations, then (0xFF00, dataset) per instance; C-GET the same without the
destination. Everything that needs a decision is settled before the count (the peer's rights, the identifier,
the destination, the matching instances); each dataset is built only when pynetdicom asks for the next one, so
one instance is in memory at a time.

Transfer syntax (outgoing.py): each instance goes in its stored syntax (HTJ2K) when the receiving side accepted it
for its SOP class, else decoded losslessly to Explicit VR Little Endian (re-encoded by pynetdicom as Implicit VR
Little Endian where only that was accepted). For C-GET the accepted contexts are the requestor's storage contexts
in which it took the SCP role (SCP/SCU role selection: contexts.py lets the listener accept it for every storage
SOP class). For C-MOVE the association to the destination proposes, per SOP class to send, the stored syntaxes
and both uncompressed ones, so a destination that accepts only uncompressed (dcmtk's storescp) still gets every
lossless instance; its accepted contexts are captured when it accepts (EVT_ACCEPTED on that association).

An instance that fits no accepted context, or cannot be read from the store, is one failed sub-operation: a stub
with its UIDs is handed to pynetdicom, whose C-STORE then fails and lists it in Failed SOP Instance UID List.

Statuses: 0xA801 for a move destination that is not a known DicomNode (or cannot be reached: pynetdicom), 0xA900
for an identifier that names no level of the model or lacks its unique key, 0xC000 when the data store cannot be
read or the peer may not retrieve, 0xFE00 when the requestor cancels (C-CANCEL).

A refused C-MOVE never touches the destination. pynetdicom 3.0.4 answers a C-MOVE handler's first status only
after it has associated with the destination it was yielded (before that it can only say 0xA801, or Success for
no sub-operations), so a refusal sent to the node would turn into 0xA801 whenever the node is down or speaks only
TLS. The refusal's destination is a Verification SCP of this process on a loopback port (`_refusal_sink`):
that association always succeeds, carries no data, and the requestor gets the real status.

Audit: one "DICOMRetrieve" event per C-GET/C-MOVE, when it ends: model, level, matched, completed, warning, failed,
the destination AE title, the calling AE and address; no patient values (no UIDs, no IDs).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification

from imaging.dicom import uids
from imaging.dimse.outgoing import (
    STATUS_UNABLE_TO_PROCESS,
    InstanceBuilder,
    InstanceRef,
    InstanceUnavailable,
    RetrieveRefused,
    accepted_syntaxes,
    instances_resolve,
    offered_contexts,
    retrieve_request_parse,
    syntax_choose,
)
from imaging.dimse.peer import Peer, peer_of
from imaging.dimse.send import status_kind, tls_arguments
from imaging.dimse.sockets import CONNECTION_HANDLERS
from imaging.models import DicomNode
from imaging.services.audit import audit_record
from imaging.storage import BlobStoreError

logger = logging.getLogger(__name__)

PENDING = 0xFF00
CANCEL = 0xFE00


@dataclass
class _Tally:
    """The sub-operations' outcomes as the receiving side answered them (C-STORE responses), and the ones that
    failed before a C-STORE was sent."""

    matched: int = 0
    completed: int = 0
    warning: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def store_response(self, event) -> None:
        """EVT_DIMSE_RECV: count each C-STORE response."""
        message = event.message
        if type(message).__name__ != "C_STORE_RSP":
            return
        status = getattr(message.command_set, "Status", None)
        kind = status_kind(int(status)) if status is not None else "failure"
        with self.lock:
            if kind == "success":
                self.completed += 1
            elif kind == "warning":
                self.warning += 1
            else:
                self.failed += 1

    def failed_before_sending(self) -> None:
        with self.lock:
            self.failed += 1


def _identifier(event) -> Dataset:
    try:
        return event.identifier
    except Exception as e:  # an identifier that cannot be decoded
        raise RetrieveRefused(0xA900, "the identifier cannot be decoded") from e


def _resolve(event, peer: Peer) -> list[InstanceRef]:
    if not peer.may_retrieve or not peer.datastore_id:
        raise RetrieveRefused(STATUS_UNABLE_TO_PROCESS, "the calling AE may not retrieve from this data store")
    request = retrieve_request_parse(_identifier(event), model=_model(event))
    try:
        return instances_resolve(datastore_id=peer.datastore_id, request=request)
    except BlobStoreError as e:
        raise RetrieveRefused(STATUS_UNABLE_TO_PROCESS, "the store could not be read") from e


def _model(event) -> str:
    try:
        return str(event.request.AffectedSOPClassUID or "")
    except Exception:  # a request without one: no model this SCP supports
        return ""


def _level(event) -> str:
    try:
        return str(event.identifier.get("QueryRetrieveLevel", "") or "")[:16]
    except Exception:
        return ""


def _audit(event, peer: Peer, *, operation: str, tally: _Tally, destination: str = "", status: int = 0,
           reason: str = "") -> None:
    parameters: dict[str, Any] = {
        "operation": operation, "level": _level(event), "callingAETitle": peer.calling_ae_title,
        "calledAETitle": peer.called_ae_title, "matched": tally.matched, "completed": tally.completed,
        "warning": tally.warning, "failed": tally.failed,
    }
    if destination:
        parameters["moveDestination"] = destination
    audit_record(event_name="DICOMRetrieve", event_type="DicomNetwork", category="Data", read_only=True,
                 source_ip=peer.address or None, datastore_id=peer.datastore_id, parameters=parameters,
                 status_code=200 if not status else 400, error_code=f"0x{status:04X}" if status else "",
                 error_message=reason)


def _stub(ref: InstanceRef) -> Dataset:
    """What pynetdicom is handed for an instance that cannot be sent: its UIDs and no transfer syntax, so the
    C-STORE sub-operation fails at once and names it in the Failed SOP Instance UID List."""
    stub = Dataset()
    stub.SOPClassUID, stub.SOPInstanceUID = ref.sop_class_uid, ref.sop_uid
    return stub


def _datasets(event, refs: list[InstanceRef], accepted_of, tally: _Tally) -> Iterator[tuple[int, Dataset | None]]:
    """(Pending, dataset) per instance, built when pynetdicom asks; (Cancel, None) after a C-CANCEL.
    `accepted_of()` gives the accepted syntaxes per SOP class of the association the C-STOREs go on."""
    builder = InstanceBuilder()
    for ref in refs:
        if event.is_cancelled:
            yield CANCEL, None
            return
        syntax = syntax_choose(ref, accepted_of().get(ref.sop_class_uid, set()))
        if syntax is None:
            tally.failed_before_sending()
            yield PENDING, _stub(ref)
            continue
        try:
            dataset = builder.dataset(ref, syntax)
        except InstanceUnavailable as e:
            logger.warning("retrieve: an instance could not be built from the store (%s)", e)
            tally.failed_before_sending()
            yield PENDING, _stub(ref)
            continue
        yield PENDING, dataset


def handle_get(event) -> Iterator[Any]:
    """EVT_C_GET: the number of sub-operations, then each instance, sent back on this association."""
    peer = peer_of(event)
    tally = _Tally()
    try:
        refs = _resolve(event, peer)
    except RetrieveRefused as refused:
        _audit(event, peer, operation="C-GET", tally=tally, status=refused.status, reason=str(refused))
        yield 1
        yield refused.status, None
        return
    tally.matched = len(refs)
    yield len(refs)
    accepted = accepted_syntaxes(event.assoc.accepted_contexts, as_scu=True)
    event.assoc.bind(evt.EVT_DIMSE_RECV, tally.store_response)
    try:
        yield from _datasets(event, refs, lambda: accepted, tally)
    finally:
        event.assoc.unbind(evt.EVT_DIMSE_RECV, tally.store_response)
        _audit(event, peer, operation="C-GET", tally=tally)


class _Destination:
    """The move destination's association, captured when it accepts (its accepted contexts choose the syntax)."""

    def __init__(self) -> None:
        self.contexts: list[PresentationContext] = []

    def accepted(self, event) -> None:
        self.contexts = list(event.assoc.accepted_contexts)

    def syntaxes(self) -> dict[str, set[str]]:
        return accepted_syntaxes(self.contexts, as_scu=True)


def handle_move(event) -> Iterator[Any]:
    """EVT_C_MOVE: the destination, the number of sub-operations, then each instance."""
    peer = peer_of(event)
    tally = _Tally()
    destination_title = str(event.move_destination or "").strip()
    node = DicomNode.objects.filter(ae_title=destination_title).first() if destination_title else None
    if node is None:
        _audit(event, peer, operation="C-MOVE", tally=tally, destination=destination_title, status=0xA801,
               reason="move destination unknown")
        yield None, None
        return
    try:
        refs = _resolve(event, peer)
    except RetrieveRefused as refused:
        _audit(event, peer, operation="C-MOVE", tally=tally, destination=destination_title, status=refused.status,
               reason=str(refused))
        # pynetdicom associates before it reads a status (with no sub-operation it would answer Success): the
        # association goes to the sink, never to the node, whose being down must not turn this into 0xA801.
        host, port = _refusal_sink()
        yield host, port, {"contexts": [_verification_context()]}
        yield 1
        yield refused.status, None
        return
    tally.matched = len(refs)
    destination = _Destination()
    arguments: dict[str, Any] = {
        "contexts": offered_contexts(refs) or [_verification_context()],
        "evt_handlers": [(evt.EVT_ACCEPTED, destination.accepted), (evt.EVT_DIMSE_RECV, tally.store_response),
                         *CONNECTION_HANDLERS],
    }
    tls = tls_arguments(node)
    if tls is not None:
        arguments["tls_args"] = tls
    yield node.host, node.port, arguments
    yield len(refs)
    try:
        yield from _datasets(event, refs, destination.syntaxes, tally)
    finally:
        _audit(event, peer, operation="C-MOVE", tally=tally, destination=destination_title)


def _verification_context() -> PresentationContext:
    return build_context(Verification, [uids.EXPLICIT_LE, uids.IMPLICIT_LE])


_sink_lock = threading.Lock()
_sink_address: tuple[str, int] | None = None


def _refusal_sink() -> tuple[str, int]:
    """The (host, port) of this process's loopback Verification SCP, started on first use (see the module
    docstring): where a refused C-MOVE's obligatory association goes."""
    global _sink_address
    with _sink_lock:
        if _sink_address is None:
            sink = AE(ae_title="APERTURE")
            sink.add_supported_context(Verification, [uids.EXPLICIT_LE, uids.IMPLICIT_LE])
            server = sink.start_server(("127.0.0.1", 0), block=False)
            _sink_address = ("127.0.0.1", int(server.server_address[1]))
        return _sink_address
