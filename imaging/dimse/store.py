"""C-STORE SCP: received instances go to disk, then into the import pipeline in batches.

The path of one instance:

1. pynetdicom writes the data set, as it arrives PDU by PDU, to a P10 file (STORE_RECV_CHUNKED_DATASET; the file
   meta comes from the command and the accepted context), never holding it whole in memory. Its temporary files
   are made in DATA_DIR/uploads/dimse-incoming (pynetdicom's NamedTemporaryFile is given that folder), so that
   keeping a file is a rename on the same file system.
2. `store_handle` checks the header (imaging/dicom/received.py): a file that fails answers 0xC000-range ("cannot
   understand") and is dropped; the association goes on and later instances are stored.
3. The file is renamed into the association's spool folder, DATA_DIR/uploads/dimse-<id>/, and fsynced (file and
   folder). Only then is the status sent: 0x0000, or 0xB007 when the data set's SOP class is not the command's.
   A full disk or any other OSError answers 0xA700 ("out of resources") and keeps nothing.
4. At the end of the association (release, abort, lost connection, the listener stopping), and every
   APERTURE_DICOM_BATCH_SECONDS or APERTURE_DICOM_BATCH_FILES on a long one, the spool folder becomes one import
   job ("C-STORE from <calling AE>", with the calling AE title and address on the job) on the task backend, like
   any other import: HTJ2K transcoding, OpenJPEG verification, checksums, manifests, live progress in the admin.
   The job deletes its folder when it ends (an uploads folder), except when the job FAILED as a whole (the blob
   store away, a job interrupted too often): those instances were acknowledged, so the folder is moved to
   DATA_DIR/uploads/dimse-failed/<job id>/ and kept, and the job's message says where, for an admin to import it
   again (the admin's folder import or `manage.py import_dicom`; imaging/pipeline/job.py `discard_uploads`).

Why the status follows the durable write and not the import: a modality sends a series as fast as we answer, and
transcoding plus verification take far longer than a rename and an fsync; answering after them would cut a
modality's throughput to the speed of the codecs. What was acknowledged is on disk, so it is never lost; an instance
that is acknowledged and later fails to import (undecodable pixels, say) is listed with its reason in the job's
manifest and on its admin page.

Crash safety: beside each spool folder a sidecar, dimse-<id>.json, names the data store and the caller, and is
held with an exclusive flock by the live listener. At start (`spools_recover`) every sidecar that no live process
holds, with files in its folder, becomes a job; empty ones are removed, and so are half-received temporary files
(never acknowledged); while it runs, housekeeping removes those of aborted transfers once nothing has written them
for APERTURE_DICOM_TIMEOUT_SECONDS, and the end of an association removes the one it was receiving. Jobs are
started with a client token derived from the spool, so a crash between the job and the removal of its sidecar
cannot import a folder twice. A job that cannot be started now (the concurrent jobs
quota, the database away) is retried every second by the listener's housekeeping (`spools_tick`).
"""
from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from tempfile import NamedTemporaryFile

from django.conf import settings
from django.db import connection, transaction
from pynetdicom import _config, dimse_messages

from imaging.dicom.received import received_check
from imaging.dimse.peer import Peer, peer_of
from imaging.models import ImportJob, JobStatus
from imaging.services.audit import audit_record
from imaging.services.imports import import_job_start_local

logger = logging.getLogger(__name__)

OUT_OF_RESOURCES = 0xA700
REFUSED_NOT_ALLOWED = 0xA701  # a node that may retrieve but not store sent a C-STORE (see listener.contexts_for)
SPOOL_PREFIX = "dimse-"
INCOMING = "dimse-incoming"


def uploads_dir() -> Path:
    return Path(settings.DATA_DIR) / "uploads"


def store_configure() -> None:
    """Make pynetdicom write received data sets to files in our incoming folder (called when a listener starts)."""
    incoming = uploads_dir() / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    _config.STORE_RECV_CHUNKED_DATASET = True
    dimse_messages.NamedTemporaryFile = functools.partial(NamedTemporaryFile, dir=str(incoming))


class Spool:
    """One batch of one association: a folder of received files and its sidecar, locked while this process owns
    it."""

    def __init__(self, *, peer: Peer, spool_id: str | None = None, lock_fd: int | None = None) -> None:
        self.peer = peer
        self.id = spool_id or uuid.uuid4().hex
        self.folder = uploads_dir() / f"{SPOOL_PREFIX}{self.id}"
        self.sidecar = uploads_dir() / f"{SPOOL_PREFIX}{self.id}.json"
        self.count = 0
        self.opened = time.monotonic()
        self.next_try = 0.0
        self._lock_fd = lock_fd
        if lock_fd is None:
            self._create()

    def _create(self) -> None:
        self.folder.mkdir(parents=True)
        facts = {"datastore_id": self.peer.datastore_id, "calling_ae_title": self.peer.calling_ae_title,
                 "called_ae_title": self.peer.called_ae_title, "address": self.peer.address}
        fd = os.open(self.sidecar, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps(facts).encode())
        os.fsync(fd)
        _fsync_dir(uploads_dir())
        self._lock_fd = fd

    def keep(self, received: Path) -> None:
        """Rename `received` into the folder and make it durable (file, then folder)."""
        target = self.folder / f"{self.count + 1:06d}.dcm"
        os.replace(received, target)
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.folder)
        self.count += 1

    def submit(self) -> bool:
        """Make the folder an import job (or remove an empty one); False when that must be tried again later."""
        if not self.folder.exists() or not any(self.folder.iterdir()):
            self._discard()
            return True
        if time.monotonic() < self.next_try:
            return False
        calling = self.peer.calling_ae_title
        files = sum(1 for path in self.folder.rglob("*") if path.is_file())  # before the job, which removes them
        try:
            with transaction.atomic():
                job = import_job_start_local(datastore_id=self.peer.datastore_id, paths=[str(self.folder)],
                                             job_name=f"C-STORE from {calling}"[:64],
                                             client_token=f"{SPOOL_PREFIX}{self.id}")
                # Inside the transaction: the job is queued on commit, so its runner sees these already.
                ImportJob.objects.filter(pk=job.id).update(calling_ae_title=calling[:16],
                                                           calling_address=self.peer.address[:64])
        except Exception as e:  # noqa: BLE001 - the files stay; housekeeping tries again
            self.next_try = time.monotonic() + min(60, settings.APERTURE_DICOM_BATCH_SECONDS)
            logger.warning("C-STORE batch from %s: no import job yet (%s: %s); will try again", calling,
                           type(e).__name__, e)
            return False
        with _registry_lock:
            _jobs_started.append(job.id)
        logger.info("C-STORE batch from %s: %s files, import job %s", calling, files, job.id)
        audit_record(event_name="DICOMStoreBatch", event_type="DicomNetwork", category="Data", read_only=False,
                     source_ip=self.peer.address or None, datastore_id=self.peer.datastore_id,
                     parameters={"callingAETitle": calling, "calledAETitle": self.peer.called_ae_title,
                                 "instances": files},
                     response={"jobId": job.id})
        self._release()
        return True

    def _discard(self) -> None:
        try:
            self.folder.rmdir()
        except OSError:
            pass
        self._release()

    def _release(self) -> None:
        self.sidecar.unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class AssociationStore:
    """The spool of one association: the batch being filled, closed once the association has ended."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.lock = threading.Lock()
        self.current: Spool | None = None
        self.closed = False

    def keep(self, received: Path) -> None:
        with self.lock:
            if self.closed:
                raise OSError("the association has ended")
            if self.current is None:
                self.current = Spool(peer=self.peer)
            self.current.keep(received)
            if self.current.count >= settings.APERTURE_DICOM_BATCH_FILES:
                self._flush()

    def tick(self) -> None:
        with self.lock:
            if self.current is not None and self.current.count and \
                    time.monotonic() - self.current.opened >= settings.APERTURE_DICOM_BATCH_SECONDS:
                self._flush()

    def finish(self) -> None:
        with self.lock:
            self.closed = True
            self._flush()

    def _flush(self) -> None:
        spool, self.current = self.current, None
        if spool is not None and not spool.submit():
            with _registry_lock:
                _pending.append(spool)


_registry_lock = threading.Lock()
_active: set[AssociationStore] = set()  # of the associations in flight
_pending: list[Spool] = []  # batches whose job could not be started yet
_jobs_started: list[str] = []  # import jobs this process started


def jobs_wait(timeout: float) -> int:
    """Wait up to `timeout` seconds for the import jobs this process started to end; how many have not. (A
    standalone listener whose task backend runs jobs in its own process waits for them before it exits.)"""
    deadline = time.monotonic() + timeout
    with _registry_lock:
        waiting = list(_jobs_started)
    while waiting:
        ended = set(ImportJob.objects.filter(pk__in=waiting, status__in=[JobStatus.COMPLETED, JobStatus.FAILED])
                    .values_list("id", flat=True))
        waiting = [job_id for job_id in waiting if job_id not in ended]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    connection.close()
    return len(waiting)


def _association_store(event) -> AssociationStore:
    """The association's store, made at its first C-STORE and kept on the association itself: once the association
    has ended it stays there closed, so a handler still running then (an abort does not wait for it) keeps nothing
    behind the back of the batch that was submitted."""
    with _registry_lock:
        found = getattr(event.assoc, "aperture_store", None)
        if found is None:
            found = event.assoc.aperture_store = AssociationStore(peer_of(event))
            _active.add(found)
        return found


def store_handle(event) -> int:
    """EVT_C_STORE: check, keep durably, answer. Never raises: pynetdicom would answer 0xC211 for us, but the
    received file must be removed either way."""
    request = event.request
    received = Path(event.dataset_path)
    try:
        if request._dataset_file is not None:
            request._dataset_file.close()  # pynetdicom closes it after we return; everything has been written
        peer = peer_of(event)
        if not peer.may_store or not peer.datastore_id:
            received.unlink(missing_ok=True)
            return REFUSED_NOT_ALLOWED
        verdict = received_check(received, sop_class_uid=str(request.AffectedSOPClassUID),
                                 sop_instance_uid=str(request.AffectedSOPInstanceUID),
                                 transfer_syntax=str(event.context.transfer_syntax))
        if not verdict.keep:
            logger.info("C-STORE from %s refused with 0x%04X: %s", peer.calling_ae_title, verdict.status,
                        verdict.reason)
            received.unlink(missing_ok=True)
            return _status(verdict.status, verdict.reason)
        _association_store(event).keep(received)
        return _status(verdict.status, verdict.reason) if verdict.status else 0x0000
    except OSError as e:
        logger.warning("C-STORE could not be kept (%s: %s): out of resources", type(e).__name__, e)
        received.unlink(missing_ok=True)
        return OUT_OF_RESOURCES
    except Exception:  # noqa: BLE001 - a bug must fail this instance, not the association
        logger.exception("C-STORE handler failed")
        received.unlink(missing_ok=True)
        return 0xC0FF


def _status(status: int, comment: str):
    """A status with its ErrorComment (at most 64 characters, PS3.7 C.4)."""
    from pydicom.dataset import Dataset

    answer = Dataset()
    answer.Status = status
    if comment:
        answer.ErrorComment = comment[:64]
    return answer


def association_end(event) -> None:
    """EVT_RELEASED / EVT_ABORTED / EVT_CONN_CLOSE: the association's last batch becomes a job (once)."""
    with _registry_lock:
        found = getattr(event.assoc, "aperture_store", None)
        if found is None:  # no C-STORE yet: a closed store, so that none can start now
            found = event.assoc.aperture_store = AssociationStore(peer_of(event)) \
                if hasattr(event.assoc, "aperture_peer") else None
        _active.discard(found)
    if found is not None:
        found.finish()
    _partial_discard(event.assoc)


def _partial_discard(assoc) -> None:
    """Remove the temporary file of a data set the association was still receiving when it ended (pynetdicom
    unlinks none: its file is ours once the handler runs, and an aborted transfer never reaches it). A complete one
    is no longer on `dimse.message` (pynetdicom resets it when the message is queued), so this never takes a file
    a handler is checking; and if it did, the store is closed by now, so that handler would keep nothing."""
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    path = getattr(message, "_data_set_path", None)
    if isinstance(path, tuple):
        path = path[0]
    if path is None or Path(path).parent.resolve() != (uploads_dir() / INCOMING).resolve():
        return
    data_set_file = getattr(message, "_data_set_file", None)
    try:
        if data_set_file is not None:
            data_set_file.close()
        Path(path).unlink(missing_ok=True)
    except OSError as e:
        logger.warning("C-STORE: a partial temporary file could not be removed (%s)", type(e).__name__)


def incoming_sweep(*, now: float | None = None) -> int:
    """Remove the incoming temporary files nothing has written for longer than APERTURE_DICOM_TIMEOUT_SECONDS: a
    live transfer writes at least once per network timeout, or its association is aborted, so such a file is what
    an aborted transfer, or a data set its association ended before handling, left. Never one acknowledged: a
    handler whose file went answers 0xA700. How many were removed."""
    now = time.time() if now is None else now
    removed = 0
    try:
        leftovers = list((uploads_dir() / INCOMING).iterdir())
    except FileNotFoundError:
        return 0
    for leftover in leftovers:
        try:
            if now - leftover.stat().st_mtime > settings.APERTURE_DICOM_TIMEOUT_SECONDS:
                leftover.unlink()
                removed += 1
        except FileNotFoundError:
            pass  # kept or removed meanwhile
    if removed:
        logger.info("C-STORE: %s abandoned temporary file(s) removed", removed)
    return removed


def spools_tick() -> None:
    """Housekeeping, every second: time-based batches of long associations, batches waiting for their job, and
    the temporary files of aborted transfers."""
    incoming_sweep()
    with _registry_lock:
        stores = list(_active)
        waiting, _pending[:] = list(_pending), []
    for store in stores:
        store.tick()
    for spool in waiting:
        if not spool.submit():
            with _registry_lock:
                _pending.append(spool)


def spools_finish_all() -> None:
    """At stop: every association's batch becomes a job; what still cannot is left for the next start."""
    with _registry_lock:
        stores = list(_active)
        _active.clear()
    for store in stores:
        store.finish()
    spools_tick()


def spools_recover() -> None:
    """At start: the spools a crashed listener left (no live process holds their sidecar) become jobs; their
    half-received temporary files go."""
    store_configure()
    uploads = uploads_dir()
    for leftover in (uploads / INCOMING).iterdir():
        if time.time() - leftover.stat().st_mtime > 60:  # another live listener may be writing a young one
            leftover.unlink(missing_ok=True)
    for sidecar in sorted(uploads.glob(f"{SPOOL_PREFIX}*.json")):
        fd = os.open(sidecar, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live listener's
        try:
            facts = json.loads(sidecar.read_text() or "{}")
        except ValueError:
            facts = {}
        spool_id = sidecar.name[len(SPOOL_PREFIX):-len(".json")]
        peer = Peer(datastore_id=facts.get("datastore_id", ""), called_ae_title=facts.get("called_ae_title", ""),
                    calling_ae_title=facts.get("calling_ae_title", ""), address=facts.get("address", ""),
                    node_id=None, may_store=True, may_query=False, may_retrieve=False)
        spool = Spool(peer=peer, spool_id=spool_id, lock_fd=fd)
        logger.info("C-STORE spool left by a stopped listener: making its import job")
        if not spool.submit():
            with _registry_lock:
                _pending.append(spool)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
