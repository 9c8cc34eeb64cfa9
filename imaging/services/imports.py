"""DICOM import jobs (SPEC 4), as the API and the admin see them: start one, read one, list them, and the
background tasks that run them.

The job driver itself (claim, quotas, the worker pool, persisting, manifests, recovery) is imaging/pipeline/job.py,
and the bookkeeping of a job distributed over workers is imaging/pipeline/batches.py; this module starts jobs, hands
a queued job to the driver and records the outcome the driver returns. Which way a job runs is the task backend's
property `distributes_work`: in one task on the local process pool (thread, eager), or as one planning task, a task
per batch of files and a finish task (celery), with a periodic task that re-queues what a dead worker left.
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any, Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from imaging.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed
from imaging.models import ImportJob, JobStatus
from imaging.pipeline.batches import (
    BatchBusy,
    batch_claim,
    batches_all_done,
    batches_pending,
    batches_release,
    distributed_work_to_recover,
    finish_claim,
    finish_heartbeat,
    seconds_until_stale,
)
from imaging.pipeline.job import (
    MAX_ATTEMPTS,
    RUNNING,
    JobOutcome,
    claim_job,
    discard_uploads,
    failure_manifests_write,
    job_batch_run,
    job_finish,
    job_plan,
    jobs_to_recover,
    run_job,
    s3_settings,
)
from imaging.pipeline.manifests import manifest_summary
from imaging.services.datastores import datastore_get_live, datastore_require_active
from imaging.services.idempotency import idempotent
from imaging.storage import blob_store
from imaging.tasks import RetryLater, enqueue, periodic, task, task_backend, worker_name

logger = logging.getLogger(__name__)

# The admin pages and `manage.py import_dicom` show a job's summary through this service.
__all__ = [
    "import_job_get", "import_job_list", "import_job_run", "import_job_start", "import_job_start_local",
    "import_job_start_upload", "import_job_run_inline", "import_jobs_recover", "import_batch_run", "import_job_finish", "manifest_summary", "upload_file_name",
]


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
        running = ImportJob.objects.filter(datastore=datastore, status__in=RUNNING).count()
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


def import_job_start_local(
    *, datastore_id: str, paths: list[str], job_name: str = "", import_roots_only: bool = False,
    client_token: str | None = None,
) -> ImportJob:
    """A job over server folders or files, with its manifests kept in the data directory. With `import_roots_only`
    (the admin's folder import) each path must be a folder under one of APERTURE_IMPORT_ROOTS; the command line and
    browser uploads may name any path. A `client_token` makes a repeated call answer the job the first one made
    (the DICOM listener's spool folders: a crash between the job and its bookkeeping must not import twice)."""
    if not paths:
        raise ValidationFailed("Give at least one file or folder to import")
    resolved = [str(Path(p).resolve()) for p in paths]
    for path in resolved:
        if import_roots_only:
            _import_root_require(Path(path))
        if not Path(path).exists():
            raise ValidationFailed(f"{path} does not exist")
    token = client_token or os.urandom(16).hex()
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


def import_job_run_inline(*, datastore_id: str, folder: Path, job_name: str) -> ImportJob:
    """A job over the files of `folder`, run to its end in the calling thread whatever the task backend, for
    STOW-RS (SPEC 11.5), which answers only once its instances are stored. It is an ordinary job row (the admin
    lists it with the others, its manifests are kept in the data directory) that is never queued; the concurrent
    jobs quota does not apply, since the request itself waits. A folder under the data directory's uploads folder
    is deleted once the job has ended."""
    datastore = datastore_require_active(datastore_id=datastore_id)
    folder = folder.resolve()
    job = ImportJob.objects.create(
        datastore=datastore,
        name=job_name[:64],
        data_access_role_arn=f"arn:aws:iam::{settings.APERTURE_ACCOUNT_ID}:role/aperture-local-import",
        input_s3_uri=folder.as_uri(),
        output_s3_uri=(Path(settings.DATA_DIR) / "imports").as_uri() + "/",
        input_paths=[str(folder)],
        client_token=os.urandom(16).hex(),
    )
    claimed = claim_job(job.id)
    if claimed is None:  # only a recovery pass that found the row in the instant before the claim
        raise Conflict(f"Import job {job.id} was claimed by another worker")
    outcome = run_job(claimed, s3=s3_settings(), blob_store=blob_store())
    if outcome is not None:
        _outcome_record(claimed, outcome)
    job.refresh_from_db()
    return job


def _import_root_require(folder: Path) -> None:
    """Refuse a resolved path that is not a folder under one of APERTURE_IMPORT_ROOTS. The path is resolved first,
    so `..` and links cannot lead out of a root; whether a folder outside the roots exists is never told."""
    roots = [Path(root).resolve() for root in settings.APERTURE_IMPORT_ROOTS]
    if not any(folder == root or folder.is_relative_to(root) for root in roots):
        raise ValidationFailed("That folder is not under an allowed import root (APERTURE_IMPORT_ROOTS).")
    if not folder.is_dir():
        raise ValidationFailed("That folder does not exist.")


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


def _save_uploads(folder: Path, uploads: Iterable) -> None:
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


def import_job_list(*, datastore_id: str, status: str | None = None) -> QuerySet[ImportJob]:
    datastore = datastore_get_live(datastore_id=datastore_id)
    queryset = ImportJob.objects.filter(datastore=datastore).order_by("-submitted_at", "-id")
    return queryset.filter(status=status) if status else queryset


@task
def import_job_run(*, job_id: str) -> None:
    """Run a queued job, unless a live worker already has it, and record how it ended. With a task backend that
    distributes work the job is split into batches instead, each its own task (import_batch_run)."""
    if ImportJob.objects.filter(pk=job_id, plan__isnull=False).exists():
        _batches_queue(job_id)  # a replay of the task that planned it: queue what may not have been queued
        return
    job = claim_job(job_id)
    if job is None:
        _retry_while_held(job_id)
        return
    if task_backend().distributes_work:
        outcome = job_plan(job, s3=s3_settings(), batch_files=settings.APERTURE_IMPORT_BATCH_FILES)
        if outcome is None:
            _batches_queue(job_id)
        else:
            _outcome_record(job, outcome)
        return
    outcome = run_job(job, s3=s3_settings(), blob_store=blob_store())
    if outcome is not None:
        _outcome_record(job, outcome)


def _retry_while_held(job_id: str) -> None:
    """A job another worker holds with a fresh heartbeat (this task is a redelivered copy, say of a killed
    worker's task): come back once that heartbeat would be stale, so the job is never left without a task."""
    job = ImportJob.objects.filter(pk=job_id, status__in=RUNNING).values("heartbeat_at").first()
    if job is not None:
        raise RetryLater(seconds_until_stale(job["heartbeat_at"], timezone.now()))


def _batches_queue(job_id: str) -> None:
    pending = batches_pending(job_id)
    with transaction.atomic():
        for index in pending:
            enqueue(import_batch_run, job_id=job_id, index=index)
    if not pending:
        _finish_if_done(job_id)


def _finish_if_done(job_id: str) -> None:
    """Queue the job's finish step once its last batch is done (whoever completes it, or a replay, or recovery;
    the step is claimed, so queuing it twice finishes it once)."""
    if batches_all_done(job_id) and ImportJob.objects.filter(pk=job_id, status=JobStatus.IN_PROGRESS).exists():
        with transaction.atomic():
            enqueue(import_job_finish, job_id=job_id)


@task
def import_batch_run(*, job_id: str, index: int) -> None:
    """Run one batch of a distributed job's files in this worker; when it was the last, queue the finish."""
    try:
        claim = batch_claim(job_id=job_id, index=index, worker=worker_name())
    except BatchBusy as e:
        raise RetryLater(e.seconds) from None
    if claim is not None:
        job = ImportJob.objects.select_related("datastore").get(pk=job_id)
        if not job_batch_run(job, claim):
            return
    _finish_if_done(job_id)


@task
def import_job_finish(*, job_id: str) -> None:
    """Gather a distributed job's batches into its outcome and manifests, and record how it ended."""
    try:
        claimed = finish_claim(job_id)
    except BatchBusy as e:
        raise RetryLater(e.seconds) from None
    if claimed is None:
        return
    job, token = claimed
    if job.outcome is None and job.attempts > MAX_ATTEMPTS + 1:  # planning was one attempt
        outcome = JobOutcome.failed(job, f"DICOM import job has failed: it was interrupted {MAX_ATTEMPTS} times")
    else:
        outcome = job_finish(job, s3=s3_settings(), blob_store=blob_store(),
                             heartbeat=lambda: finish_heartbeat(job_id, token))
    if outcome is not None:
        _outcome_record(job, outcome)


def _outcome_record(job: ImportJob, outcome: JobOutcome) -> None:
    ImportJob.objects.filter(pk=outcome.job_id).update(status=outcome.status, ended_at=timezone.now(),
                                                       message=outcome.message)
    if outcome.status == JobStatus.FAILED:
        job.refresh_from_db()
        failure_manifests_write(job, s3_settings())
    batches_release(job.id)
    discard_uploads(job)


def import_jobs_recover(*, assume_dead: bool = False) -> int:
    """Queue again the work a crashed worker left behind: whole jobs, and the batches and finish steps of jobs
    distributed over workers; `assume_dead` when this process is the only worker. Returns how many jobs."""
    job_ids = jobs_to_recover(assume_dead=assume_dead)
    for job_id in job_ids:
        with transaction.atomic():
            enqueue(import_job_run, job_id=job_id)
    recovery = distributed_work_to_recover(assume_dead=assume_dead)
    with transaction.atomic():
        for job_id, index in recovery.batches:
            enqueue(import_batch_run, job_id=job_id, index=index)
        for job_id in recovery.finishes:
            enqueue(import_job_finish, job_id=job_id)
    if recovery.batches or recovery.finishes:
        logger.info("re-queued %d batch(es) and %d finish step(s) of interrupted import jobs",
                    len(recovery.batches), len(recovery.finishes))
    return len(job_ids) + len({job_id for job_id, _ in recovery.batches} | set(recovery.finishes))


@periodic(every="APERTURE_RECOVERY_EVERY_SECONDS")
@task
def import_work_recover() -> None:
    """Every few seconds, wherever periodic tasks run (Celery beat; the thread backend's timer): queue again the
    jobs and batches whose worker stopped beating, so a killed worker's job finishes on another one without
    waiting for a restart."""
    count = import_jobs_recover()
    if count:
        logger.info("re-queued work of %d interrupted import job(s)", count)
