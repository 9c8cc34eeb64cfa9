"""The import job driver (SPEC 4): claim a job, discover its input, stream every file through the worker pool,
persist the image sets with the job's outcome, write the manifests; and find the jobs a crashed worker left.

A job runs as one background task. The claim is a compare-and-set on the job row (SUBMITTED, or IN_PROGRESS with
a stale heartbeat, becomes IN_PROGRESS), so two workers never run one job; while it runs, the heartbeat says it
is alive. Frames go to the blob store as the workers finish their files; the image sets and the job's outcome are
committed in one transaction (imaging/pipeline/persist.py), so a job cut off anywhere before that commit leaves
nothing visible and is run again, and one cut off after it only writes its manifests again.

With a task backend that distributes work (Celery), the claimed job is instead split into batches of files
(`job_plan`), each a task any worker runs in its own process (imaging/pipeline/batches.py); when the last batch is
done, `job_finish` gathers their results through the same collecting and persisting steps, so the outcome and the
manifests are those of a job run in one process.

The driver returns a JobOutcome (COMPLETED or FAILED, with the message) and does not record it: the import
service (imaging/services/imports.py) does, and then discards the uploads. This module must not import services.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from imaging.dicom.reader import DecodeLimits
from imaging.models import ImportJob, JobStatus
from imaging.pipeline.batches import (
    CRASHED_FILE_MESSAGE,
    BatchClaim,
    batch_done,
    batch_heartbeat,
    batch_result_record,
    batch_results,
    batches_create,
)
from imaging.pipeline.discover import discover
from imaging.pipeline.frame_store import FrameSink
from imaging.pipeline.heartbeat import Heartbeat
from imaging.pipeline.json_metadata import (
    MetadataImportError,
    MetadataOverride,
    finish_instance,
    load_overrides,
    metadata_mappings,
)
from imaging.pipeline.manifests import manifests_write, output_probe_write, with_slash
from imaging.pipeline.persist import StoredInstance, persist_instances, stored_instance
from imaging.pipeline.pool import process_all, process_file
from imaging.pipeline.results import FileResult
from imaging.pipeline.sources import S3Settings, SourceError, SourceObject, read_ahead, split_s3_uri
from imaging.storage import BlobStore, blob_store_address, discard_blobs
from imaging.storage.keys import frame_blob_key

logger = logging.getLogger(__name__)

RUNNING = (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS)
HEARTBEAT_EVERY = timedelta(seconds=2)
# A job cut off this many times (say, a file that crashes the worker process every time) ends FAILED instead of
# looping for ever.
MAX_ATTEMPTS = 3


class JobFailure(Exception):
    """A job-level problem: the job ends FAILED with this message."""


class JobTakenOver(Exception):
    """Another worker claimed the job while this one ran it: this one stops and records nothing."""


@dataclass(frozen=True)
class JobLimits:
    """The job's quotas and tuning, as the settings give them when the job starts."""

    max_files: int
    max_bytes: int
    max_file_bytes: int
    max_decoded_bytes: int
    max_frame_pixels: int
    concurrency: int
    file_timeout_seconds: float | None
    merge_wait_seconds: float

    @classmethod
    def from_settings(cls) -> JobLimits:
        return cls(
            max_files=settings.APERTURE_IMPORT_MAX_FILES,
            max_bytes=settings.APERTURE_IMPORT_MAX_BYTES,
            max_file_bytes=settings.APERTURE_IMPORT_MAX_FILE_BYTES,
            max_decoded_bytes=settings.APERTURE_IMPORT_MAX_DECODED_BYTES,
            max_frame_pixels=settings.APERTURE_MAX_FRAME_PIXELS,
            concurrency=settings.APERTURE_IMPORT_CONCURRENCY,
            file_timeout_seconds=settings.APERTURE_IMPORT_FILE_TIMEOUT_SECONDS,
            merge_wait_seconds=settings.APERTURE_IMPORT_MERGE_WAIT_SECONDS,
        )


@dataclass(frozen=True)
class JobOutcome:
    """How a claimed job ended, for the service to record: COMPLETED, or FAILED with the message to show."""

    job_id: str
    status: str
    message: str = ""

    @classmethod
    def completed(cls, job: ImportJob) -> JobOutcome:
        return cls(job_id=job.id, status=JobStatus.COMPLETED)

    @classmethod
    def failed(cls, job: ImportJob, message: str) -> JobOutcome:
        return cls(job_id=job.id, status=JobStatus.FAILED, message=message[:2048])


def s3_settings() -> S3Settings:
    return S3Settings(
        endpoint_url=settings.APERTURE_S3_ENDPOINT_URL,
        access_key_id=settings.APERTURE_S3_ACCESS_KEY_ID,
        secret_access_key=settings.APERTURE_S3_SECRET_ACCESS_KEY,
        region=settings.APERTURE_REGION,
    )


def _stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.APERTURE_IMPORT_STALE_SECONDS)


def claim_job(job_id: str) -> ImportJob | None:
    """Move the job to IN_PROGRESS unless a live worker already has it; None when this worker must not run it.
    A job cut off MAX_ATTEMPTS times ends FAILED here, and its uploads are discarded."""
    now = timezone.now()
    # Both updates are compare-and-set on the row: of two workers that find the same stale job, one wins.
    given_up = ImportJob.objects.filter(pk=job_id, status=JobStatus.IN_PROGRESS, attempts__gte=MAX_ATTEMPTS,
                                        outcome__isnull=True).filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=_stale_before(now))
    ).update(status=JobStatus.FAILED, ended_at=now,
             message=f"DICOM import job has failed: it was interrupted {MAX_ATTEMPTS} times")
    if given_up:
        job = ImportJob.objects.get(pk=job_id)
        failure_manifests_write(job, s3_settings())
        discard_uploads(job)
    stale = _stale_before(now)
    claimable = Q(status=JobStatus.SUBMITTED) | Q(status=JobStatus.IN_PROGRESS, heartbeat_at__lt=stale) | Q(
        status=JobStatus.IN_PROGRESS, heartbeat_at__isnull=True
    )
    updated = ImportJob.objects.filter(claimable, pk=job_id).update(
        status=JobStatus.IN_PROGRESS, heartbeat_at=now, started_at=now, attempts=F("attempts") + 1
    )
    return ImportJob.objects.select_related("datastore").get(pk=job_id) if updated else None


def jobs_to_recover(*, assume_dead: bool = False) -> list[str]:
    """The ids of the jobs a crashed worker left behind, to be queued again; `assume_dead` when the calling
    process is the only worker, so that no running job can be alive (their heartbeats are cleared).

    Otherwise (Celery workers, and the periodic recovery task) a job IN_PROGRESS is taken back once its heartbeat
    is stale. A job still SUBMITTED is normally waiting in the queue, which keeps it: it is queued again only when
    it has waited three stale periods (its message may be lost), and then stamped, so that a long queue is not
    flooded with copies of it."""
    now = timezone.now()
    # A job split into batches is recovered batch by batch (imaging/pipeline/batches.py), not run again whole.
    queryset = ImportJob.objects.filter(status__in=RUNNING, plan__isnull=True)
    if not assume_dead:
        lost_before = now - 3 * timedelta(seconds=settings.APERTURE_IMPORT_STALE_SECONDS)
        abandoned = Q(status=JobStatus.IN_PROGRESS) & (Q(heartbeat_at__lt=_stale_before(now))
                                                       | Q(heartbeat_at__isnull=True))
        lost = Q(status=JobStatus.SUBMITTED) & (Q(heartbeat_at__isnull=True, submitted_at__lt=lost_before)
                                                | Q(heartbeat_at__lt=lost_before))
        queryset = queryset.filter(abandoned | lost)
    job_ids = list(queryset.values_list("id", flat=True))
    if assume_dead:
        ImportJob.objects.filter(pk__in=job_ids, status=JobStatus.IN_PROGRESS).update(heartbeat_at=None)
    else:
        ImportJob.objects.filter(pk__in=job_ids, status=JobStatus.SUBMITTED).update(heartbeat_at=now)
    return job_ids


def failure_manifests_write(job: ImportJob, s3: S3Settings) -> None:
    """The manifests of a job that failed as a whole, its message in the summary. Best effort: the failure may be
    that the output location cannot be written, and the job's status says what happened either way."""
    try:
        manifests_write(job, s3, failure=job.message or "DICOM import job has failed")
    except Exception as e:  # noqa: BLE001 - the job has failed already; a second failure must not hide the first
        logger.warning("import job %s: the manifests of the failed job could not be written (%s)", job.id,
                       type(e).__name__)


DIMSE_SPOOL_PREFIX = "dimse-"  # imaging/dimse/store.py's spool folders (this module must not import it)
DIMSE_FAILED = "dimse-failed"


def discard_uploads(job: ImportJob) -> None:
    """Files uploaded through the admin exist only for their job: once it has ended they are deleted, so that
    patient data does not pile up in the data directory (the job's manifests keep what became of each file).

    Except the spool of a C-STORE job that FAILED as a whole (the blob store away, a job interrupted too often):
    those instances were acknowledged, and the modality may have deleted its copy, so the folder is moved to
    uploads/dimse-failed/<job id>/ and kept for an admin to import again; the job's message says where."""
    uploads = (Path(settings.DATA_DIR) / "uploads").resolve()
    for path in job.input_paths or []:
        folder = Path(path).resolve()
        if uploads not in folder.parents:
            continue
        if job.status == JobStatus.FAILED and (uploads / DIMSE_FAILED) in folder.parents:
            continue  # a re-import of kept files that failed again: they stay where they are
        if job.status == JobStatus.FAILED and (job.calling_ae_title or folder.name.startswith(DIMSE_SPOOL_PREFIX)) \
                and folder.parent == uploads and folder.name != DIMSE_FAILED and folder.exists():
            _dimse_spool_keep(job, folder, uploads / DIMSE_FAILED / job.id)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _dimse_spool_keep(job: ImportJob, folder: Path, kept: Path) -> None:
    """Move a failed C-STORE job's acknowledged instances aside instead of deleting them."""
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder, kept)
    except OSError as e:
        logger.warning("import job %s failed; its C-STORE files stay in %s (%s)", job.id, folder, type(e).__name__)
        kept = folder
    else:
        logger.warning("import job %s failed; its C-STORE files were kept in %s", job.id, kept)
    where = f" (the received files are kept in {kept}, to import again)"
    ImportJob.objects.filter(pk=job.id).update(
        message=(job.message or "DICOM import job has failed")[:2048 - len(where)] + where)


class Progress:
    """The job's file counts, and its heartbeat: written to the row at most every HEARTBEAT_EVERY."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.last = timezone.now()
        self.scanned = self.imported = self.failed = 0

    def add(self, ok: bool) -> None:
        self.scanned += 1
        if ok:
            self.imported += 1
        else:
            self.failed += 1
        now = timezone.now()
        if now - self.last >= HEARTBEAT_EVERY:
            self.flush(now)

    def flush(self, now: datetime | None = None) -> None:
        self.last = now or timezone.now()
        ImportJob.objects.filter(pk=self.job.pk).update(
            heartbeat_at=self.last, scanned_files=self.scanned, imported_files=self.imported, failed_files=self.failed
        )


def run_job(
    job: ImportJob, *, s3: S3Settings, blob_store: BlobStore, limits: JobLimits | None = None
) -> JobOutcome | None:
    """Run a claimed job to its end in this process (its files on the local worker pool) and say how it ended
    (None: another worker took it over); never raises for the job's own problems."""
    limits = limits or JobLimits.from_settings()
    with Heartbeat(lambda: ImportJob.objects.filter(pk=job.pk, status=JobStatus.IN_PROGRESS).update(
            heartbeat_at=timezone.now())):
        return _ended(job, s3, lambda: _import(job, s3, blob_store, limits))


def _ended(job: ImportJob, s3: S3Settings, import_step: Callable[[], None]) -> JobOutcome | None:
    """Run the job's import step unless its outcome has committed already, then write its manifests; the job's
    own problems become a FAILED outcome; None when another worker took the job over (record nothing)."""
    try:
        if job.outcome is None:
            import_step()
        manifests_write(job, s3)
    except JobTakenOver:
        logger.warning("import job %s was taken over by another worker; this one stops", job.id)
        return None
    except (JobFailure, SourceError) as e:
        return JobOutcome.failed(job, str(e))
    except Exception:
        logger.exception("import job %s failed", job.id)
        return JobOutcome.failed(job, "DICOM import job has failed: internal error")
    return JobOutcome.completed(job)


def job_plan(
    job: ImportJob, *, s3: S3Settings, limits: JobLimits | None = None, batch_files: int
) -> JobOutcome | None:
    """Split a claimed job into batches for task workers (imaging/pipeline/batches.py): discovery, quotas, the
    output probe and the JSON metadata happen here, once; the files then run batch by batch wherever a worker
    is free. None when the batches are recorded (queue them); a FAILED outcome when the job fails at discovery.
    A job planned already keeps its batches."""
    limits = limits or JobLimits.from_settings()
    if job.plan is not None or job.outcome is not None:
        return None
    try:
        found = _discover(job, s3, limits)
    except (JobFailure, SourceError) as e:
        return JobOutcome.failed(job, str(e))
    except Exception:
        logger.exception("import job %s failed", job.id)
        return JobOutcome.failed(job, "DICOM import job has failed: internal error")
    plan = {"lines": found.lines, "overrides": overrides_to_json(found.overrides)}
    batches = batches_create(job=job, files=[(item.uri, item.display_name) for item in found.objects],
                             batch_files=batch_files, plan=plan)
    logger.info("import job %s: %d files in %d batches", job.id, len(found.objects), batches)
    return None


def job_finish(job: ImportJob, *, s3: S3Settings, blob_store: BlobStore, limits: JobLimits | None = None,
               heartbeat: Callable[[], object] | None = None) -> JobOutcome | None:
    """Gather a distributed job's batch results into its outcome, persist its image sets and write its manifests,
    exactly as run_job does for a job run in one process; the caller has claimed the finish step."""
    limits = limits or JobLimits.from_settings()
    with Heartbeat(heartbeat or (lambda: None)):
        return _ended(job, s3, lambda: _gather(job, blob_store, limits))


def _check_input_owner(job: ImportJob) -> None:
    """inputOwnerAccountId is the account the caller expects to own the input bucket (SPEC 4.1)."""
    if not job.input_owner_account_id or job.input_paths:
        return
    bucket, _ = split_s3_uri(job.input_s3_uri)
    owner = settings.APERTURE_S3_BUCKET_OWNERS.get(bucket, settings.APERTURE_ACCOUNT_ID)
    if owner != job.input_owner_account_id:
        raise JobFailure(
            f"DICOM import job has failed: the input bucket {bucket} is not owned by account "
            f"{job.input_owner_account_id} (inputOwnerAccountId)"
        )


def _metadata_overrides(job: ImportJob, objects: list[SourceObject], s3: S3Settings):
    """(overrides by study, metadata file URIs) of the job's JSON metadata import configuration (SPEC 4.10)."""
    mappings = metadata_mappings(job.import_configuration)
    if not mappings:
        return {}, set()
    if job.input_paths:
        base = str(Path(job.input_paths[0])) + os.sep
    else:
        prefix = split_s3_uri(job.input_s3_uri)[1]
        base = with_slash(prefix) if prefix else ""
    try:
        return load_overrides(mappings, objects, base, s3)
    except MetadataImportError as e:
        raise JobFailure(f"DICOM import job has failed: {e}") from e


def job_batch_run(job: ImportJob, claim: BatchClaim, *, limits: JobLimits | None = None) -> bool:
    """Run a claimed batch's remaining files in this process, recording each file's result as it completes;
    True once the batch is DONE, False when another worker took it over."""
    limits = limits or JobLimits.from_settings()
    s3 = s3_settings()
    url, s3_address = blob_store_address()
    sink = FrameSink(blob_store_url=url, blob_store_s3=s3_address, datastore_id=job.datastore_id, job_id=job.id)
    decode_limits = DecodeLimits(max_decoded_bytes=limits.max_decoded_bytes, max_frame_pixels=limits.max_frame_pixels)
    # Each S3 object is fetched while the file before it is processed. Frame writes are not deferred here: a
    # file's result is recorded as soon as it is done, so its frames must be stored by then.
    read_ahead([uri for uri, _ in claim.files[claim.next_position:]], s3)
    with Heartbeat(lambda: batch_heartbeat(claim)):
        while claim.next_position < len(claim.files):
            uri, name = claim.files[claim.next_position]
            if claim.next_file_failed_alone:
                result = FileResult(input_file=name).fail("InternalServerException", CRASHED_FILE_MESSAGE)
            else:
                result = process_file(uri, name, s3, job.datastore.lossless_storage_format, sink, decode_limits,
                                      limits.file_timeout_seconds)
            if not batch_result_record(claim, result):
                return False
        return batch_done(claim)


@dataclass
class Discovered:
    """A job's input after discovery: the files to process, the manifest lines of those refused while listing,
    and the JSON metadata overrides."""

    objects: list[SourceObject]
    lines: list[dict[str, Any]]
    overrides: dict[str, list[MetadataOverride]]


def _discover(job: ImportJob, s3: S3Settings, limits: JobLimits) -> Discovered:
    _check_input_owner(job)
    objects = discover([Path(p).as_uri() for p in job.input_paths] or [job.input_s3_uri], s3,
                       max_files=limits.max_files, max_bytes=limits.max_bytes)
    output_probe_write(job, s3)
    lines: list[dict[str, Any]] = []
    for item in objects:
        too_large = f"The file is larger than the {limits.max_file_bytes}-byte limit"
        reason = item.failure or (too_large if item.size > limits.max_file_bytes else "")
        if reason:
            lines.append({"inputFile": item.display_name,
                          "exception": {"exceptionType": "ValidationException", "message": reason}})
    objects = [item for item in objects if not item.failure and item.size <= limits.max_file_bytes]
    overrides, metadata_files = _metadata_overrides(job, objects, s3)
    objects = [item for item in objects if item.uri not in metadata_files]
    return Discovered(objects=objects, lines=lines, overrides=overrides)


def overrides_to_json(overrides: dict[str, list[MetadataOverride]]) -> dict[str, list[dict[str, Any]]]:
    return {study: [asdict(override) for override in items] for study, items in overrides.items()}


def overrides_from_json(data: dict[str, list[dict[str, Any]]]) -> dict[str, list[MetadataOverride]]:
    return {study: [MetadataOverride(**item) for item in items] for study, items in data.items()}


class Collected:
    """The processed files of a job on their way to persisting: manifest lines of failures, instances to store,
    and the frame blobs written (removed again if the job fails before its commit)."""

    def __init__(self, job: ImportJob, overrides: dict[str, list[MetadataOverride]], blob_store: BlobStore,
                 lines: list[dict[str, Any]], progress: Progress) -> None:
        self.job, self.overrides, self.blob_store, self.progress = job, overrides, blob_store, progress
        self.lines = lines
        self.instances: list[StoredInstance] = []
        self.frame_keys: list[str] = []

    def add(self, result: FileResult) -> None:
        job = self.job
        if result.ok:
            finish_instance(result, self.overrides, discard=lambda frame: discard_blobs(
                self.blob_store, [frame_blob_key(job.datastore_id, frame.frame_id)]))
        if result.ok:
            self.frame_keys += [frame_blob_key(job.datastore_id, frame.frame_id) for frame in result.frames]
            self.instances.append(stored_instance(result, job.datastore_id))
        else:
            self.lines.append({"inputFile": result.input_file,
                               "exception": {"exceptionType": result.exception_type, "message": result.message}})
        self.progress.add(result.ok)


def _import(job: ImportJob, s3: S3Settings, blob_store: BlobStore, limits: JobLimits) -> None:
    """Everything up to and including the commit of the job's outcome. Frames the workers wrote are removed
    again when this fails; once the outcome has committed they belong to its image sets."""
    found = _discover(job, s3, limits)
    progress = Progress(job)
    for _ in found.lines:
        progress.add(False)
    started = time.perf_counter()
    collected = Collected(job, found.overrides, blob_store, list(found.lines), progress)
    try:
        url, s3_address = blob_store_address()
        sink = FrameSink(blob_store_url=url, blob_store_s3=s3_address, datastore_id=job.datastore_id, job_id=job.id)
        for result in process_all(found.objects, s3=s3, storage_format=job.datastore.lossless_storage_format,
                                  concurrency=limits.concurrency, sink=sink,
                                  limits=DecodeLimits(max_decoded_bytes=limits.max_decoded_bytes,
                                                      max_frame_pixels=limits.max_frame_pixels),
                                  file_timeout=limits.file_timeout_seconds):
            collected.add(result)
    except BaseException:
        discard_blobs(blob_store, collected.frame_keys)
        raise
    processed = time.perf_counter()
    _persist(job, collected, blob_store, limits)
    logger.info("import job %s: %d files processed in %.2fs, persisted in %.2fs", job.id, progress.scanned,
                processed - started, time.perf_counter() - processed)


def _gather(job: ImportJob, blob_store: BlobStore, limits: JobLimits) -> None:
    """A distributed job's batch results, in discovery order, through the same steps as a job run here."""
    plan = job.plan or {}
    progress = Progress(job)
    for _ in plan.get("lines", []):
        progress.add(False)
    collected = Collected(job, overrides_from_json(plan.get("overrides", {})), blob_store,
                          list(plan.get("lines", [])), progress)
    for result in batch_results(job.id):
        collected.add(result)
    started = time.perf_counter()
    _persist(job, collected, blob_store, limits)
    logger.info("import job %s: %d files gathered from %d batches, persisted in %.2fs", job.id, progress.scanned,
                plan.get("batches", 0), time.perf_counter() - started)


def _persist(job: ImportJob, collected: Collected, blob_store: BlobStore, limits: JobLimits) -> None:
    """Persist the collected instances with the job's outcome in one transaction (persist.py)."""
    progress, instances, lines = collected.progress, collected.instances, collected.lines
    try:
        progress.flush()
        # Discovery order, not completion order, decides which copy of a repeated SOP instance is "latest".
        instances.sort(key=lambda item: item.input_file)

        def record(summaries: list[dict[str, Any]]) -> None:
            # Runs inside the persisting transaction, possibly more than once when it is retried: build afresh.
            # Fenced on the claim: a worker taken for dead that is in fact still here (its heartbeat could not be
            # written for a while) and was claimed over must not persist the job a second time.
            if not ImportJob.objects.filter(pk=job.pk, attempts=job.attempts, outcome__isnull=True).update(
                outcome={"lines": lines + _instance_lines(instances), "imageSetsSummary": summaries,
                         "scanned": progress.scanned}
            ):
                raise JobTakenOver(job.id)

        persist_instances(datastore=job.datastore, instances=instances, blob_store=blob_store, after_write=record,
                          merge_wait_seconds=limits.merge_wait_seconds, while_waiting=progress.flush)
    except JobTakenOver:
        raise  # the frames are the other worker's too (same ids): nothing is removed
    except BaseException:
        discard_blobs(blob_store, collected.frame_keys)
        raise
    # Frames of instances that could not be merged belong to nothing: remove them.
    conflicts = [item for item in instances if item.conflict]
    discard_blobs(blob_store, [frame.blob_key for item in conflicts for frame in item.frames])
    if conflicts:
        progress.imported -= len(conflicts)
        progress.failed += len(conflicts)
        progress.flush()
    job.refresh_from_db()


def _instance_lines(instances: list[StoredInstance]) -> list[dict[str, Any]]:
    """The manifest lines of the processed instances, as persisting left them."""
    lines: list[dict[str, Any]] = []
    for item in instances:
        if item.conflict:
            lines.append({"inputFile": item.input_file,
                          "exception": {"exceptionType": "ConflictException", "message": item.conflict}})
            continue
        response: dict[str, Any] = {"imageSetId": item.image_set_id, "imageSetVersion": item.version,
                                    "isPrimary": item.is_primary}
        if item.warnings:
            response["warnings"] = item.warnings
        lines.append({"inputFile": item.input_file, "importResponse": response})
    return lines
