"""The DICOM listener: pynetdicom association servers, plain and (optionally) TLS, with association control and a
graceful stop.

`manage.py dicom_listener` runs one in its own process; with the embedded default `manage.py serve` runs one in a
background thread of the web process (`listener_start_embedded`). Both are a `Listener`:

- `start()` first turns the spool folders a crashed listener left (instances acknowledged, no import job made yet)
  into jobs (store.spools_recover), then opens the servers: APERTURE_DICOM_HOST:port, and with
  APERTURE_DICOM_TLS_CERT/_KEY also APERTURE_DICOM_TLS_PORT speaking TLS (client certificates required when
  APERTURE_DICOM_TLS_CA is set).
- Each association request is decided by peer.peer_decide before pynetdicom negotiates (GuardedACSE): rejected with
  A-ASSOCIATE-RJ for an unknown called or calling AE title, or a data store that is not ACTIVE; accepted with only
  the presentation contexts the peer may use (a node without may_store is offered no storage contexts, unless it may
  retrieve, which needs them for C-GET: then store.py refuses its C-STOREs with 0xA701). Every decision is audited.
- `stop()` stops accepting, lets the associations in flight finish for up to APERTURE_DICOM_SHUTDOWN_SECONDS, then
  aborts the rest. Every instance acknowledged was fsynced to its spool folder before its status went out, and an
  association's end (release, abort, or this stop) makes its folder an import job, so nothing acknowledged is lost;
  an instance cut off mid-transfer was never acknowledged and the sender still holds it.

Limits: APERTURE_DICOM_MAX_ASSOCIATIONS concurrent associations (more are rejected, local limit exceeded), twice
as many connections still waiting for their association to be decided (more are closed at once; one whose peer
hangs up ends at once, a TLS handshake gets TLS_HANDSHAKE_SECONDS), APERTURE_DICOM_TIMEOUT_SECONDS for the ACSE,
DIMSE and network timeouts, and PDUs of at most MAX_PDU_BYTES. With TLS configured, port 0 serves TLS only.
On PostgreSQL an association's threads give their pooled connection back after the decision and after each
handler (handlers.connection_releasing), so idle associations hold none.
"""
from __future__ import annotations

import logging
import ssl
import threading
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from pynetdicom import AE, _config, evt
from pynetdicom.acse import ACSE
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from imaging.addresses import host_is_loopback
from imaging.dimse import contexts, store
from imaging.dimse.handlers import connection_release, handlers
from imaging.dimse.peer import Peer, Refusal, peer_decide
from imaging.services.audit import audit_record

logger = logging.getLogger(__name__)

# The largest P-DATA PDU we accept (dcmtk's own maximum); bigger PDUs mean fewer round trips per instance.
MAX_PDU_BYTES = 128 * 1024
# A-ASSOCIATE-RJ for a refusal we cannot put into words (the database did not answer): transient, no reason.
REJECT_TRANSIENT = (0x02, 0x01, 0x01)
REJECT_TOO_MANY = (0x02, 0x03, 0x02)  # transient, ACSE presentation related, local limit exceeded
# A TLS client gets this long to finish its handshake: until then it holds a thread and counts as pending.
TLS_HANDSHAKE_SECONDS = 10

# pynetdicom's standard handlers log every DIMSE message, with UIDs: none of that goes to our logs.
_config.LOG_HANDLER_LEVEL = "none"
# Nor the identifiers of queries and their answers (patient names and IDs), which it would otherwise format for a
# debug line on every message, logged or not.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


class GuardedACSE(ACSE):
    """pynetdicom's ACSE with our decision first: pynetdicom has no hook between an A-ASSOCIATE request and its
    answer, so the acceptor's negotiation is wrapped here (installed by GuardedRequestHandler)."""

    def _negotiate_as_acceptor(self) -> None:
        self.assoc.aperture_decided = True  # from here on APERTURE_DICOM_MAX_ASSOCIATIONS bounds it
        slot = getattr(self.assoc, "aperture_pending_slot", None)
        if slot is not None:
            slot.release()
        request = self.requestor.primitive
        called, calling = str(request.called_ae_title).strip(), str(request.calling_ae_title).strip()
        address = str(self.assoc.requestor.address_info.address)
        # Connections that have not asked yet do not count: APERTURE_DICOM_MAX_ASSOCIATIONS is about associations.
        acceptors = [other for other in self.assoc.ae.active_associations if other.is_acceptor
                     and getattr(other, "aperture_decided", True)]
        if len(acceptors) > self.assoc.ae.maximum_associations:
            self._reject(REJECT_TOO_MANY, called=called, calling=calling, address=address, datastore_id="",
                         reason="too many associations (APERTURE_DICOM_MAX_ASSOCIATIONS)")
            return
        try:
            decision = peer_decide(called_ae_title=called, calling_ae_title=calling, address=address)
        except Exception:  # noqa: BLE001 - the database is down or similar: refuse for now, keep the listener
            logger.exception("DICOM association from %s could not be decided", address)
            self._reject(REJECT_TRANSIENT, called=called, calling=calling, address=address, datastore_id="",
                         reason="internal error")
            return
        if isinstance(decision, Refusal):
            self._reject(decision.reject, called=called, calling=calling, address=address,
                         datastore_id=decision.datastore_id, reason=decision.reason)
            return
        self.assoc.aperture_peer = decision
        # The acceptor's contexts are a copy per association; pynetdicom forbids setting them once the request has
        # arrived, so the list is replaced underneath.
        self.acceptor._contexts = contexts_for(decision, self.acceptor.supported_contexts)
        association_audit(peer=decision, accepted=True, reason="")
        connection_release()
        super()._negotiate_as_acceptor()

    def _reject(self, reject: tuple[int, int, int], *, called: str, calling: str, address: str,
                datastore_id: str, reason: str) -> None:
        logger.info("DICOM association from %s (calling %s, called %s) rejected: %s", address, calling, called,
                    reason)
        association_audit(
            peer=Peer(datastore_id=datastore_id, called_ae_title=called, calling_ae_title=calling, address=address,
                      node_id=None, may_store=False, may_query=False, may_retrieve=False),
            accepted=False, reason=reason)
        connection_release()
        self.send_reject(*reject)
        evt.trigger(self.assoc, evt.EVT_REJECTED, {})
        self.assoc.kill()


def contexts_for(peer: Peer, offered: list) -> list:
    """The contexts of `offered` this peer may use: verification always; storage to store, or to receive C-GET's
    sub-operations; query and retrieve models by their flags."""
    allowed = set(contexts.abstract_syntaxes(contexts.VERIFICATION))
    if peer.may_store or peer.may_retrieve:
        allowed |= contexts.abstract_syntaxes(contexts.STORAGE)
    if peer.may_query:
        allowed |= contexts.abstract_syntaxes(contexts.QUERY)
    if peer.may_retrieve:
        allowed |= contexts.abstract_syntaxes(contexts.RETRIEVE)
    return [context for context in offered if str(context.abstract_syntax) in allowed]


def association_audit(*, peer: Peer, accepted: bool, reason: str) -> None:
    """One audit event per association request, accepted or rejected (no patient data: AE titles, address, data
    store)."""
    audit_record(
        event_name="DICOMAssociate",
        event_type="DicomNetwork",
        category="Data",
        read_only=False,
        source_ip=peer.address or None,
        datastore_id=peer.datastore_id,
        parameters={"callingAETitle": peer.calling_ae_title, "calledAETitle": peer.called_ae_title,
                    "address": peer.address, "dicomNodeId": peer.node_id, "mayStore": peer.may_store,
                    "mayQuery": peer.may_query, "mayRetrieve": peer.may_retrieve},
        status_code=200 if accepted else 403,
        error_code="" if accepted else "AssociationRejected",
        error_message=reason,
    )


class GuardedRequestHandler(RequestHandler):
    """Runs in a thread per connection: the TLS handshake happens here (not in the accepting thread, where one slow
    client would hold up every other), then the association with our ACSE."""

    def handle(self) -> None:
        # The slot goes with the association once there is one (given back when it is decided, or ends).
        self.pending_slot = _PendingSlot(self.server)
        self.association_started = False
        try:
            self._handle()
        finally:
            if not self.association_started:
                self.pending_slot.release()

    def _handle(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(TLS_HANDSHAKE_SECONDS)
                self.request.do_handshake()
                self.request.settimeout(settings.APERTURE_DICOM_TIMEOUT_SECONDS)
            except (OSError, ssl.SSLError) as e:
                logger.info("DICOM TLS handshake with %s failed: %s", self.client_address[0], type(e).__name__)
                self.request.close()
                return
        super().handle()

    def _create_association(self):
        association = super()._create_association()
        association.acse = GuardedACSE(association)
        association.aperture_pending_slot = self.pending_slot
        association.aperture_decided = False
        _request_or_hang_up(association)
        # The association's two threads (its reactor runs the handlers, its DUL the connection events) use the
        # database; with a connection pool a thread that ends without closing its connection never gives it back.
        for thread in (association, association.dul):
            thread.run = _closing_connections(thread.run, self.pending_slot)
        self.association_started = True
        return association


def _request_or_hang_up(association) -> None:
    """pynetdicom waits the whole ACSE timeout for the A-ASSOCIATE request even after the peer has closed the
    connection, holding two threads and a pending slot: this first wait gives up as soon as the connection is
    gone."""
    dul = association.dul
    receive = dul.receive_pdu

    def receive_request(wait: bool = False, timeout: float | None = None):
        dul.receive_pdu = receive  # only the first wait, for the request
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            primitive = receive(wait=True, timeout=0.2)
            if primitive is not None or not dul.is_alive():
                return primitive
            if deadline is not None and time.monotonic() > deadline:
                return None

    dul.receive_pdu = receive_request


class _PendingSlot:
    """A connection's place among those waiting for their association to be decided, given back once."""

    def __init__(self, server: "LazyTlsServer") -> None:
        self._server, self._lock, self._held = server, threading.Lock(), True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._server.pending_done()


def _closing_connections(run, pending_slot: _PendingSlot):
    def run_then_close() -> None:
        try:
            run()
        finally:
            pending_slot.release()
            connections.close_all()
    return run_then_close


class LazyTlsServer(ThreadedAssociationServer):
    """pynetdicom's server wraps each accepted socket with TLS in the accepting thread, handshake included; here
    the handshake waits for the connection's own thread (GuardedRequestHandler.handle).

    Every accepted connection gets a thread before anything is decided, so connections that never speak (or never
    finish a TLS handshake) could pile threads up: at most `pending` (twice APERTURE_DICOM_MAX_ASSOCIATIONS, shared
    by the plain and TLS servers of a listener) may wait for their association to be decided; past it a new
    connection is closed at once. An association that is decided (accepted or rejected) no longer counts: the maximum of
    associations bounds those."""

    pending: threading.BoundedSemaphore | None = None

    def process_request(self, request, client_address) -> None:
        if self.pending is not None and not self.pending.acquire(blocking=False):
            logger.warning("DICOM connection from %s closed: too many connections waiting for their association",
                           client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.pending_done()
            raise

    def pending_done(self) -> None:
        if self.pending is not None:
            self.pending.release()

    def get_request(self):
        client_socket, address = self.socket.accept()
        if self.ssl_context:
            client_socket = self.ssl_context.wrap_socket(client_socket, server_side=True,
                                                         do_handshake_on_connect=False)
        return client_socket, address


class Listener:
    """The association servers of one process."""

    def __init__(self, *, host: str, port: int, ae_title: str, tls_port: int | None = None) -> None:
        self.host, self.port, self.ae_title = host, port, ae_title
        self.tls_port = settings.APERTURE_DICOM_TLS_PORT if tls_port is None else tls_port
        self.ae: AE | None = None
        self.servers: list[ThreadedAssociationServer] = []
        self._stopping = threading.Event()
        self._housekeeper: threading.Thread | None = None

    def start(self) -> "Listener":
        store.spools_recover()
        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = settings.APERTURE_DICOM_MAX_ASSOCIATIONS
        timeout = settings.APERTURE_DICOM_TIMEOUT_SECONDS
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
        ae.maximum_pdu_size = MAX_PDU_BYTES
        self.ae = ae
        self._pending = threading.BoundedSemaphore(2 * settings.APERTURE_DICOM_MAX_ASSOCIATIONS)
        tls = tls_context()
        if not self.port and (tls is None or not self.tls_port):
            raise ImproperlyConfigured("the DICOM listener needs a port: APERTURE_DICOM_PORT, or with TLS "
                                       "APERTURE_DICOM_TLS_PORT")
        if self.port:
            self.servers.append(self._serve(self.port, ssl_context=None))
        if tls is not None and self.tls_port:
            self.servers.append(self._serve(self.tls_port, ssl_context=tls))
        if settings.APERTURE_DICOM_ALLOW_ANY and not host_is_loopback(self.host):
            logger.warning("APERTURE_DICOM_ALLOW_ANY is true and the DICOM listener listens on %s: ANY calling AE "
                           "title from ANY host that reaches it may store, query and retrieve. Add the known nodes "
                           "(manage.py dicom_node add) and set APERTURE_DICOM_ALLOW_ANY=false", self.host)
        self._housekeeper = threading.Thread(target=self._housekeep, name="dicom-listener-housekeeping",
                                             daemon=True)
        self._housekeeper.start()
        ports = [f"{self.port}" if self.port else "", f"TLS on {self.tls_port}" if tls is not None and self.tls_port
                 else ""]
        logger.info("DICOM listener %s on %s:%s", self.ae_title, self.host, " and ".join(p for p in ports if p))
        return self

    def _serve(self, port: int, *, ssl_context: ssl.SSLContext | None) -> ThreadedAssociationServer:
        assert self.ae is not None
        server = self.ae.make_server(
            (self.host, port), ae_title=self.ae_title, contexts=contexts.supported_contexts(),
            ssl_context=ssl_context, evt_handlers=handlers(), server_class=LazyTlsServer,
            request_handler=GuardedRequestHandler,
        )
        server.pending = self._pending
        self.ae._servers.append(server)  # where pynetdicom's own start_server keeps it; shutdown() removes it
        threading.Thread(target=server.serve_forever, name=f"dicom-listener-{port}", daemon=True).start()
        return server

    def _housekeep(self) -> None:
        while not self._stopping.wait(1.0):
            try:
                store.spools_tick()
            except Exception:  # noqa: BLE001 - the next tick tries again; the listener must keep serving
                logger.exception("DICOM spool housekeeping failed")
            finally:
                connection.close()

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop accepting; wait for the associations in flight (up to APERTURE_DICOM_SHUTDOWN_SECONDS), abort the
        rest; make every spool an import job."""
        grace = settings.APERTURE_DICOM_SHUTDOWN_SECONDS if grace_seconds is None else grace_seconds
        self._stopping.set()
        for server in self.servers:
            server.shutdown()
        for association in self.active_associations():
            if not getattr(association, "aperture_decided", True):
                association.abort()  # not decided yet: nothing acknowledged, nothing to wait for
        deadline = time.monotonic() + grace
        while self.active_associations() and time.monotonic() < deadline:
            time.sleep(0.1)
        for association in self.active_associations():
            logger.info("DICOM listener stopping: aborting an association still in flight")
            association.abort()
        store.spools_finish_all()
        connection.close()

    def active_associations(self) -> list:
        return [association for server in self.servers for association in server.active_associations
                if association.is_alive()]


def tls_context() -> ssl.SSLContext | None:
    """The server TLS context from APERTURE_DICOM_TLS_CERT/_KEY (and _CA: client certificates required), or None."""
    cert, key, ca = settings.APERTURE_DICOM_TLS_CERT, settings.APERTURE_DICOM_TLS_KEY, settings.APERTURE_DICOM_TLS_CA
    if bool(cert) != bool(key) or (ca and not cert):
        raise ImproperlyConfigured("DICOM TLS needs both APERTURE_DICOM_TLS_CERT and APERTURE_DICOM_TLS_KEY "
                                   "(APERTURE_DICOM_TLS_CA only with them)")
    if not cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert, keyfile=key)
    if ca:
        context.load_verify_locations(cafile=ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def listener_start_embedded() -> Listener | None:
    """The listener of `manage.py serve` with the embedded default: APERTURE_DICOM_LISTEN and a port that is not 0,
    or port 0 with TLS configured (TLS only)."""
    tls_only = bool(settings.APERTURE_DICOM_TLS_CERT and settings.APERTURE_DICOM_TLS_PORT)
    if not settings.APERTURE_DICOM_LISTEN or not (settings.APERTURE_DICOM_PORT or tls_only):
        return None
    listener = Listener(host=settings.APERTURE_DICOM_HOST, port=settings.APERTURE_DICOM_PORT,
                        ae_title=settings.APERTURE_DICOM_AET)
    try:
        return listener.start()
    except OSError as e:
        # The web server is what a first try needs most: a taken port costs the DICOM side only.
        logger.error("DICOM listener not started on %s:%s: %s (APERTURE_DICOM_PORT; APERTURE_DICOM_LISTEN=false "
                     "turns it off)", settings.APERTURE_DICOM_HOST, settings.APERTURE_DICOM_PORT, e)
        listener.stop(grace_seconds=0)
        return None
