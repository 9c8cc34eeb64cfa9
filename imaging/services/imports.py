"""DICOM import jobs (SPEC 4): start, read, list, run, and recover after a crash.

A job runs as one background task: list the input, enforce the job quotas, stream every file through the worker
processes (frames go to the blob store as they arrive), then group and persist every image set of the job in one
transaction together with the job's outcome, and finally write the four manifests from that outcome. A job cut
off anywhere before the commit leaves nothing visible and is run again; one cut off after it only rewrites its
manifests.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from imaging.dicom.reader import DecodeLimits
from imaging.errors import NotFound, QuotaExceeded, ValidationFailed
from imaging.models import ImportJob, JobStatus
from imaging.pipeline.json_metadata import MetadataImportError, finish_instance, load_overrides, metadata_mappings
from imaging.pipeline.persist import StoredInstance, discard_blobs, persist_instances, stored_instance
from imaging.pipeline.transcode import FrameSink, frame_blob_key
from imaging.pipeline.pool import process_all
from imaging.pipeline.sources import (
    S3Settings,
    SourceError,
    SourceObject,
    list_objects,
    split_s3_uri,
    write_object,
)
from imaging.services.common import idempotent
from imaging.services.datastores import datastore_get_live, datastore_require_active
from imaging.storage import blob_store, blob_store_address
from imaging.tasks import enqueue, task

logger = logging.getLogger(__name__)

_RUNNING = (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS)
_HEARTBEAT_EVERY = timedelta(seconds=2)


class JobFailure(Exception):
    """A job-level problem: the job ends FAILED with this message."""


def s3_settings() -> S3Settings:
    return S3Settings(
        endpoint_url=settings.APERTURE_S3_ENDPOINT_URL,
        access_key_id=settings.APERTURE_S3_ACCESS_KEY_ID,
        secret_access_key=settings.APERTURE_S3_SECRET_ACCESS_KEY,
        region=settings.APERTURE_REGION,
    )


def _with_slash(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


def import_job_start(
    *,
    datastore_id: str,
    client_token: str,
    data_access_role_arn: str,
    input_s3_uri: str,
    output_s3_uri: str,
    job_name: str | None = None,
    input_owner_account_id: str | None = None,
    import_configuration: dict[str, Any] | None = None,
    input_paths: list[str] | None = None,
) -> dict[str, Any]:
    """Queue a job (SUBMITTED) and answer at once; idempotent on clientToken."""
    params = {
        "datastore": datastore_id, "name": job_name, "role": data_access_role_arn, "input": input_s3_uri,
        "output": output_s3_uri, "owner": input_owner_account_id, "config": import_configuration,
        "paths": input_paths or [],
    }

    def create() -> dict[str, Any]:
        datastore = datastore_require_active(datastore_id=datastore_id)
        running = ImportJob.objects.filter(datastore=datastore, status__in=_RUNNING).count()
        if running >= settings.APERTURE_MAX_CONCURRENT_IMPORTS:
            raise QuotaExceeded(
                f"The quota of {settings.APERTURE_MAX_CONCURRENT_IMPORTS} concurrent import jobs has been reached"
            )
        job = ImportJob.objects.create(
            datastore=datastore,
            name=job_name or "",
            data_access_role_arn=data_access_role_arn,
            input_s3_uri=input_s3_uri,
            output_s3_uri=output_s3_uri,
            input_owner_account_id=input_owner_account_id or "",
            import_configuration=import_configuration,
            input_paths=input_paths or [],
            client_token=client_token,
        )
        enqueue(import_job_run, job_id=job.id)
        return {"datastoreId": datastore.id, "jobId": job.id, "jobStatus": job.status,
                "submittedAt": job.submitted_at.timestamp()}

    return idempotent(operation="StartDICOMImportJob", client_token=client_token, params=params, create=create)


def import_job_start_local(*, datastore_id: str, paths: list[str], job_name: str = "") -> ImportJob:
    """A job over server folders or files, with its manifests kept in the data directory."""
    if not paths:
        raise ValidationFailed("Give at least one file or folder to import")
    resolved = [str(Path(p).resolve()) for p in paths]
    for path in resolved:
        if not Path(path).exists():
            raise ValidationFailed(f"{path} does not exist")
    token = os.urandom(16).hex()
    answer = import_job_start(
        datastore_id=datastore_id,
        client_token=token,
        data_access_role_arn=f"arn:aws:iam::{settings.APERTURE_ACCOUNT_ID}:role/aperture-local-import",
        input_s3_uri=Path(resolved[0]).as_uri(),
        output_s3_uri=(Path(settings.DATA_DIR) / "imports").as_uri() + "/",
        job_name=job_name or None,
        input_paths=resolved,
    )
    return ImportJob.objects.get(pk=answer["jobId"])



def import_job_start_upload(*, datastore_id: str, uploads: Iterable) -> ImportJob:
    """A job over files uploaded through the browser (Django UploadedFiles), saved under the data directory's
    uploads folder, which the job deletes once it has ended."""
    folder = Path(settings.DATA_DIR) / "uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    _save_uploads(folder, uploads)
    return import_job_start_local(datastore_id=datastore_id, paths=[str(folder)])


def upload_file_name(name: str) -> str:
    """The name a browser gave an uploaded file, as one safe path component: the manifests show it, so the sender
    can tell which file failed. Folders the name claims are dropped (no path traversal), unprintable characters
    too, and the name is cut to 200 bytes; a name with nothing left but dots becomes "upload"."""
    name = "".join(ch for ch in name.replace("\\", "/").rsplit("/", 1)[-1] if ch.isprintable()).strip()
    name = name.encode()[:200].decode(errors="ignore")
    return name if name.strip(".") else "upload"


def _save_uploads(folder: Path, uploads) -> None:
    """Each file under its own name in `folder`; a name that repeats goes into a numbered subfolder, so that two
    files called IM0001 from different series are both kept and both named."""
    for number, upload in enumerate(uploads):
        target = folder / upload_file_name(upload.name or "")
        if target.exists():
            target = folder / f"{number:05d}" / target.name
            target.parent.mkdir()
        with open(target, "wb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)


def import_job_get(*, datastore_id: str, job_id: str) -> ImportJob:
    datastore = datastore_get_live(datastore_id=datastore_id)
    job = ImportJob.objects.filter(pk=job_id, datastore=datastore).first()
    if job is None:
        raise NotFound(f"Import job {job_id} does not exist")
    return job


def import_job_list(*, datastore_id: str, status: str | None = None):
    datastore = datastore_get_live(datastore_id=datastore_id)
    queryset = ImportJob.objects.filter(datastore=datastore).order_by("-submitted_at", "-id")
    return queryset.filter(status=status) if status else queryset


def job_output_prefix(job: ImportJob) -> str:
    return f"{_with_slash(job.output_s3_uri)}{job.datastore_id}-DicomImport-{job.id}/"


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


MAX_ATTEMPTS = 3


def _claim(job_id: str) -> ImportJob | None:
    """Move the job to IN_PROGRESS unless a live worker already has it. A job that was cut off MAX_ATTEMPTS times
    (say, a file that crashes the worker process every time) ends FAILED instead of looping for ever."""
    now = timezone.now()
    given_up = ImportJob.objects.filter(pk=job_id, status=JobStatus.IN_PROGRESS, attempts__gte=MAX_ATTEMPTS,
                                        outcome__isnull=True).filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - timedelta(seconds=settings.APERTURE_IMPORT_STALE_SECONDS))
    ).update(status=JobStatus.FAILED, ended_at=now,
             message=f"DICOM import job has failed: it was interrupted {MAX_ATTEMPTS} times")
    if given_up:
        _discard_uploads(ImportJob.objects.get(pk=job_id))
    stale = now - timedelta(seconds=settings.APERTURE_IMPORT_STALE_SECONDS)
    claimable = Q(status=JobStatus.SUBMITTED) | Q(status=JobStatus.IN_PROGRESS, heartbeat_at__lt=stale) | Q(
        status=JobStatus.IN_PROGRESS, heartbeat_at__isnull=True
    )
    updated = ImportJob.objects.filter(claimable, pk=job_id).update(
        status=JobStatus.IN_PROGRESS, heartbeat_at=now, started_at=now, attempts=F("attempts") + 1
    )
    return ImportJob.objects.select_related("datastore").get(pk=job_id) if updated else None


class _Progress:
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
        if now - self.last >= _HEARTBEAT_EVERY:
            self.flush(now)

    def flush(self, now=None) -> None:
        self.last = now or timezone.now()
        ImportJob.objects.filter(pk=self.job.pk).update(
            heartbeat_at=self.last, scanned_files=self.scanned, imported_files=self.imported, failed_files=self.failed
        )


def _discover(job: ImportJob, s3: S3Settings) -> list[SourceObject]:
    objects: list[SourceObject] = []
    for uri in [Path(p).as_uri() for p in job.input_paths] or [job.input_s3_uri]:
        objects += list_objects(uri, s3)
    objects = _read_once(objects)
    if len(objects) > settings.APERTURE_IMPORT_MAX_FILES:
        raise JobFailure("DICOM import job has failed. FILE_COUNTS_LIMIT_EXCEEDED")
    if sum(item.size for item in objects) > settings.APERTURE_IMPORT_MAX_BYTES:
        raise JobFailure("DICOM import job has failed. FILE_SIZE_LIMIT_EXCEEDED")
    return objects


def _read_once(objects: list[SourceObject]) -> list[SourceObject]:
    """A file reached twice (overlapping folders, a link to a file beside it) is one instance: it is read once,
    under its own name rather than a link's when both were found."""
    chosen: dict[str, SourceObject] = {}
    for item in objects:
        if item.failure:
            continue
        current = chosen.get(item.uri)
        if current is None or (not _read_under_own_name(current) and _read_under_own_name(item)):
            chosen[item.uri] = item
    return [item for item in objects if item.failure or chosen[item.uri] is item]


def _read_under_own_name(item: SourceObject) -> bool:
    return item.uri.startswith("file://") and item.uri == Path(item.display_name).as_uri()


@task
def import_job_run(*, job_id: str) -> None:
    job = _claim(job_id)
    if job is None:
        return
    s3 = s3_settings()
    blobs = blob_store()
    written: list[str] = []
    try:
        if job.outcome is None:
            _import(job, s3, blobs, written)
        _write_manifests(job, s3)
    except JobFailure as e:
        _fail(job, str(e), blobs, written)
        return
    except SourceError as e:
        _fail(job, str(e), blobs, written)
        return
    except Exception:
        logger.exception("import job %s failed", job.id)
        _fail(job, "DICOM import job has failed: internal error", blobs, written)
        return
    ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED, ended_at=timezone.now(), message="")
    _discard_uploads(job)


def _fail(job: ImportJob, message: str, blobs, written: list[str]) -> None:
    for key in written:
        blobs.delete(key)
    ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, ended_at=timezone.now(), message=message[:2048])
    _discard_uploads(job)


def _discard_uploads(job: ImportJob) -> None:
    """Files uploaded through the admin exist only for their job: once it has ended they are deleted, so that
    patient data does not pile up in the data directory (the job's manifests keep what became of each file)."""
    uploads = (Path(settings.DATA_DIR) / "uploads").resolve()
    for path in job.input_paths or []:
        folder = Path(path).resolve()
        if uploads in folder.parents:
            shutil.rmtree(folder, ignore_errors=True)


def _metadata_overrides(job: ImportJob, objects: list[SourceObject], s3: S3Settings):
    """(overrides by study, metadata file URIs) of the job's JSON metadata import configuration (SPEC 4.10)."""
    mappings = metadata_mappings(job.import_configuration)
    if not mappings:
        return {}, set()
    if job.input_paths:
        base = str(Path(job.input_paths[0])) + os.sep
    else:
        prefix = split_s3_uri(job.input_s3_uri)[1]
        base = _with_slash(prefix) if prefix else ""
    try:
        return load_overrides(mappings, objects, base, s3)
    except MetadataImportError as e:
        raise JobFailure(f"DICOM import job has failed: {e}") from e


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


def _import(job: ImportJob, s3: S3Settings, blobs, written: list[str]) -> None:
    _check_input_owner(job)
    objects = _discover(job, s3)
    # The output location must be writable before any data is written.
    prefix = job_output_prefix(job)
    write_object(prefix + "job-output-manifest.json", b"{}", s3)
    progress = _Progress(job)
    started = time.perf_counter()
    lines: list[dict[str, Any]] = []
    limit = settings.APERTURE_IMPORT_MAX_FILE_BYTES
    for item in objects:
        reason = item.failure or (f"The file is larger than the {limit}-byte limit" if item.size > limit else "")
        if reason:
            lines.append({"inputFile": item.display_name,
                          "exception": {"exceptionType": "ValidationException", "message": reason}})
            progress.add(False)
    objects = [item for item in objects if not item.failure and item.size <= limit]
    overrides, metadata_files = _metadata_overrides(job, objects, s3)
    objects = [item for item in objects if item.uri not in metadata_files]
    instances: list[StoredInstance] = []
    url, s3_address = blob_store_address()
    sink = FrameSink(blob_store_url=url, blob_store_s3=s3_address, datastore_id=job.datastore_id, job_id=job.id)
    for result in process_all(objects, s3=s3, storage_format=job.datastore.lossless_storage_format,
                              concurrency=settings.APERTURE_IMPORT_CONCURRENCY, sink=sink,
                              limits=DecodeLimits(max_decoded_bytes=settings.APERTURE_IMPORT_MAX_DECODED_BYTES,
                                                  max_frame_pixels=settings.APERTURE_MAX_FRAME_PIXELS),
                              file_timeout=settings.APERTURE_IMPORT_FILE_TIMEOUT_SECONDS):
        if result.ok:
            finish_instance(result, overrides, discard=lambda frame: discard_blobs(
                blobs, [frame_blob_key(job.datastore_id, frame.frame_id)]))
        if result.ok:
            # Workers wrote the frames; remember them so a job that fails later removes them again.
            written += [frame_blob_key(job.datastore_id, frame.frame_id) for frame in result.frames]
            instances.append(stored_instance(result, job.datastore_id))
        else:
            lines.append({"inputFile": result.input_file,
                          "exception": {"exceptionType": result.exception_type, "message": result.message}})
        progress.add(result.ok)
    progress.flush()
    # Discovery order, not completion order, decides which copy of a repeated SOP instance is "latest".
    instances.sort(key=lambda item: item.input_file)

    def record(summaries: list[dict[str, Any]]) -> None:
        # Runs inside the persisting transaction, possibly more than once when it is retried: build afresh.
        imported = []
        for item in instances:
            if item.conflict:
                imported.append({"inputFile": item.input_file,
                                 "exception": {"exceptionType": "ConflictException", "message": item.conflict}})
                continue
            response: dict[str, Any] = {"imageSetId": item.image_set_id, "imageSetVersion": item.version,
                                        "isPrimary": item.is_primary}
            if item.warnings:
                response["warnings"] = item.warnings
            imported.append({"inputFile": item.input_file, "importResponse": response})
        ImportJob.objects.filter(pk=job.pk).update(
            outcome={"lines": lines + imported, "imageSetsSummary": summaries, "scanned": progress.scanned}
        )

    processed = time.perf_counter()
    persist_instances(datastore=job.datastore, instances=instances, blobs=blobs, after_write=record,
                      merge_wait_seconds=settings.APERTURE_IMPORT_MERGE_WAIT_SECONDS, while_waiting=progress.flush)
    # Frames of instances that could not be merged belong to nothing: remove them.
    conflicts = [item for item in instances if item.conflict]
    for item in conflicts:
        for _frame_id, key, _syntax, _size in item.frames:
            blobs.delete(key)
    if conflicts:
        progress.imported -= len(conflicts)
        progress.failed += len(conflicts)
        progress.flush()
    logger.info("import job %s: %d files processed in %.2fs, persisted in %.2fs", job.id, progress.scanned,
                processed - started, time.perf_counter() - processed)
    job.refresh_from_db()


def _ndjson(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def manifest_summary(job: ImportJob) -> dict[str, Any]:
    outcome = job.outcome or {}
    lines = outcome.get("lines", [])
    prefix = job_output_prefix(job)
    failures = [line for line in lines if "exception" in line]
    return {
        "jobSummary": {
            "jobId": job.id,
            "datastoreId": job.datastore_id,
            "inputS3Uri": job.input_s3_uri,
            "outputS3Uri": prefix,
            "successOutputS3Uri": prefix + "SUCCESS/",
            "failureOutputS3Uri": prefix + "FAILURE/",
            "warningsOutputS3Uri": prefix + "WARNING/",
            "numberOfScannedFiles": outcome.get("scanned", len(lines)),
            "numberOfImportedFiles": len(lines) - len(failures),
            "numberOfFilesWithCustomerError": sum(
                1 for line in failures if line["exception"]["exceptionType"] != "InternalServerException"
            ),
            "numberOfFilesWithServerError": sum(
                1 for line in failures if line["exception"]["exceptionType"] == "InternalServerException"
            ),
            "numberOfGeneratedImageSets": len(outcome.get("imageSetsSummary", [])),
            "imageSetsSummary": outcome.get("imageSetsSummary", []),
        }
    }


def _write_manifests(job: ImportJob, s3: S3Settings) -> None:
    lines = (job.outcome or {}).get("lines", [])
    prefix = job_output_prefix(job)
    success = [line for line in lines if "importResponse" in line and not line["importResponse"].get("warnings")]
    warning = [line for line in lines if "importResponse" in line and line["importResponse"].get("warnings")]
    failure = [line for line in lines if "exception" in line]
    write_object(prefix + "SUCCESS/success.ndjson", _ndjson(success), s3, "application/x-ndjson")
    write_object(prefix + "WARNING/warning.ndjson", _ndjson(warning), s3, "application/x-ndjson")
    write_object(prefix + "FAILURE/failure.ndjson", _ndjson(failure), s3, "application/x-ndjson")
    write_object(prefix + "job-output-manifest.json", json.dumps(manifest_summary(job), indent=1).encode(), s3)


def import_jobs_recover(*, assume_dead: bool = False) -> int:
    """Queue again the jobs a crashed worker left behind; `assume_dead` when this process is the only worker."""
    stale = timezone.now() - timedelta(seconds=settings.APERTURE_IMPORT_STALE_SECONDS)
    queryset = ImportJob.objects.filter(status__in=_RUNNING)
    if not assume_dead:
        queryset = queryset.filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, status=JobStatus.SUBMITTED))
    job_ids = list(queryset.values_list("id", flat=True))
    if assume_dead:
        ImportJob.objects.filter(pk__in=job_ids, status=JobStatus.IN_PROGRESS).update(heartbeat_at=None)
    for job_id in job_ids:
        with transaction.atomic():
            enqueue(import_job_run, job_id=job_id)
    return len(job_ids)
