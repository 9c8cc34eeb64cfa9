"""The bookkeeping of an import job distributed over task workers: its batches of files, who runs each, their
results, who gathers them, and which of them a dead worker left behind.

With a task backend that distributes work (Celery), a job is split once (imaging/pipeline/job.py `job_plan`) into
ImportBatch rows of a few files each, every batch one task that any worker takes. A batch runs its files in the
worker's own process and appends each file's result (the FileResult as JSON; the frames are already in the blob
store) to its row as it completes. When the last batch is DONE, one "finish" step gathers every result into the
job's outcome exactly as a job run in one process does (job.py `job_finish`).

Every step is a compare-and-set on a row, so a task delivered twice (a crash, a broker redelivery, a recovery
re-queue) does its work once:
- a batch is claimed with a fresh token (`claim`); a result or DONE is written only under that token, so a worker
  whose batch was taken over writes nothing more;
- a batch held by a worker that still beats its heartbeat is not taken: the caller is told how long to wait
  (BatchBusy), it never drops the task;
- a batch taken over from a dead worker resumes after its last recorded file; the file the dead worker was on is
  run again once, and fails alone if it ends a worker a second time;
- frame ids derive from (job, input file, frame index), so a file run again writes the same blobs, never new ones;
- the finish step is claimed on the job row (`finisher`), and persisting is one transaction (persist.py).

This module knows the models and the pipeline's plain results; it never imports services or a task backend.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from imaging.models import BatchStatus, ImportBatch, ImportJob, JobStatus
from imaging.pipeline.results import EncodedFrame, FileResult

# A file whose worker was lost this many times fails alone instead of ending workers for ever.
MAX_FILE_CRASHES = 2
CRASHED_FILE_MESSAGE = ("The worker processing the file crashed, or ran past APERTURE_IMPORT_FILE_TIMEOUT_SECONDS"
                        " in native code")


class BatchBusy(Exception):
    """Another worker holds the batch (or the job's finish step) and may be alive: try again in `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"held by a live worker; try again in {seconds:g}s")
        self.seconds = seconds


def stale_seconds() -> int:
    return settings.APERTURE_IMPORT_STALE_SECONDS


def _stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=stale_seconds())


def seconds_until_stale(heartbeat_at: datetime | None, now: datetime) -> float:
    if heartbeat_at is None:
        return 1.0
    return max(1.0, (heartbeat_at + timedelta(seconds=stale_seconds()) - now).total_seconds() + 1.0)


# --- results as JSON ---------------------------------------------------------------------------------------------

def result_to_json(result: FileResult) -> dict[str, Any]:
    """A file's result as plain JSON for its batch row; frames keep their id and size (their bytes are stored)."""
    data = asdict(result)
    data["frames"] = [{"frame_id": frame.frame_id, "size": frame.size or len(frame.frame_bytes)}
                      for frame in result.frames]
    data["grouping"] = list(result.grouping)
    return data


def result_from_json(data: dict[str, Any]) -> FileResult:
    values = dict(data)
    values["frames"] = [EncodedFrame(frame_id=frame["frame_id"], frame_bytes=b"", size=frame["size"])
                        for frame in data.get("frames", [])]
    values["grouping"] = tuple(data.get("grouping", ()))
    return FileResult(**values)


# --- planning ----------------------------------------------------------------------------------------------------

def batches_create(*, job: ImportJob, files: list[tuple[str, str]], batch_files: int, plan: dict[str, Any]) -> int:
    """Split the job's files into batches and record its plan, in one transaction; a job planned already keeps its
    batches (a replayed planning task must not split the input twice). Returns the number of batches."""
    with transaction.atomic():
        if not ImportJob.objects.filter(pk=job.pk, plan__isnull=True).update(plan={**plan, "batches": -1}):
            return ImportJob.objects.get(pk=job.pk).plan["batches"]
        now = timezone.now()
        chunks = [files[start:start + batch_files] for start in range(0, len(files), batch_files)]
        ImportBatch.objects.bulk_create([
            ImportBatch(job_id=job.pk, index=index, files=[list(item) for item in chunk], queued_at=now)
            for index, chunk in enumerate(chunks)
        ])
        ImportJob.objects.filter(pk=job.pk).update(plan={**plan, "batches": len(chunks)}, heartbeat_at=now)
    return len(chunks)


def batches_pending(job_id: str) -> list[int]:
    """The batches no worker has taken yet (a batch RUNNING has its task; recovery watches its heartbeat)."""
    return list(ImportBatch.objects.filter(job_id=job_id, status=BatchStatus.PENDING)
                .order_by("index").values_list("index", flat=True))


def batches_all_done(job_id: str) -> bool:
    return not ImportBatch.objects.filter(job_id=job_id).exclude(status=BatchStatus.DONE).exists()


def batch_results(job_id: str) -> list[FileResult]:
    """Every file's result of the job, in discovery order (batch by batch, file by file)."""
    results: list[FileResult] = []
    for batch_results_json in ImportBatch.objects.filter(job_id=job_id).order_by("index").values_list("results",
                                                                                                     flat=True):
        results += [result_from_json(item) for item in batch_results_json]
    return results


def batches_release(job_id: str) -> None:
    """Once the job has ended, its batches' file lists and results (each file's metadata, now in the image sets and
    manifests) are dropped, so the table does not keep a second copy of every import; the rows stay, with who ran
    each batch and how many attempts it took."""
    ImportBatch.objects.filter(job_id=job_id).update(files=[], results=[])


# --- running a batch ---------------------------------------------------------------------------------------------

@dataclass
class BatchClaim:
    """A batch this worker holds: its files, the results recorded so far, and the token its writes carry."""

    job_id: str
    index: int
    pk: int
    token: str
    files: list[tuple[str, str]]
    results: list[dict[str, Any]] = field(default_factory=list)
    crashes: int = 0

    @property
    def next_position(self) -> int:
        return len(self.results)

    @property
    def next_file_failed_alone(self) -> bool:
        """The next file has ended its worker MAX_FILE_CRASHES times: it fails without being run again."""
        return self.crashes >= MAX_FILE_CRASHES


def batch_claim(*, job_id: str, index: int, worker: str) -> BatchClaim | None:
    """Take the batch for this worker; None when there is nothing left to do (it is DONE, or the job is gone or
    has ended). BatchBusy when a worker that is still beating holds it."""
    row = ImportBatch.objects.filter(job_id=job_id, index=index, job__status=JobStatus.IN_PROGRESS).values(
        "pk", "status", "claim", "heartbeat_at", "crashes", "files", "results").first()
    if row is None or row["status"] == BatchStatus.DONE:
        return None
    now = timezone.now()
    held = row["status"] == BatchStatus.RUNNING
    if held and row["heartbeat_at"] is not None and row["heartbeat_at"] >= _stale_before(now):
        raise BatchBusy(seconds_until_stale(row["heartbeat_at"], now))
    # A batch RUNNING without a heartbeat lost its worker while on the file after its last recorded result.
    crashes = row["crashes"] + 1 if held else row["crashes"]
    token = uuid.uuid4().hex
    taken = ImportBatch.objects.filter(pk=row["pk"], status=row["status"], claim=row["claim"]).update(
        status=BatchStatus.RUNNING, claim=token, worker=worker[:200], heartbeat_at=now, crashes=crashes,
        attempts=F("attempts") + 1)
    if not taken:
        raise BatchBusy(1.0)  # another worker took it between our read and write: look again shortly
    return BatchClaim(job_id=job_id, index=index, pk=row["pk"], token=token,
                      files=[(uri, name) for uri, name in row["files"]], results=list(row["results"]),
                      crashes=crashes)


def batch_heartbeat(claim: BatchClaim) -> bool:
    """Say the batch's worker (and so the job) is alive; False once the batch is no longer this worker's."""
    now = timezone.now()
    held = ImportBatch.objects.filter(pk=claim.pk, claim=claim.token).update(heartbeat_at=now)
    if held:
        ImportJob.objects.filter(pk=claim.job_id).update(heartbeat_at=now)
    return bool(held)


def batch_result_record(claim: BatchClaim, result: FileResult) -> bool:
    """Append a file's result under the claim; False when the batch was taken over (then stop: the new holder
    runs the rest)."""
    results = claim.results + [result_to_json(result)]
    if not ImportBatch.objects.filter(pk=claim.pk, claim=claim.token).update(
            results=results, crashes=0, heartbeat_at=timezone.now()):
        return False
    claim.results, claim.crashes = results, 0
    return True


def batch_done(claim: BatchClaim) -> bool:
    """Mark the batch DONE and add its counts to the job's progress, once; False when it was taken over."""
    ok = sum(1 for item in claim.results if item["ok"])
    now = timezone.now()
    with transaction.atomic():
        if not ImportBatch.objects.filter(pk=claim.pk, claim=claim.token, status=BatchStatus.RUNNING).update(
                status=BatchStatus.DONE, heartbeat_at=now):
            return False
        ImportJob.objects.filter(pk=claim.job_id).update(
            heartbeat_at=now, scanned_files=F("scanned_files") + len(claim.results),
            imported_files=F("imported_files") + ok, failed_files=F("failed_files") + len(claim.results) - ok)
    return True


# --- finishing the job -------------------------------------------------------------------------------------------

def finish_claim(job_id: str) -> tuple[ImportJob, str] | None:
    """Take the job's finish step (gather, persist, manifests) for this worker: (the job, the claim token), or
    None when the job has ended. BatchBusy while another worker that is still beating is finishing it."""
    now = timezone.now()
    token = uuid.uuid4().hex
    free = Q(finisher="") | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=_stale_before(now))
    taken = ImportJob.objects.filter(free, pk=job_id, status=JobStatus.IN_PROGRESS, plan__isnull=False).update(
        finisher=token, heartbeat_at=now, attempts=F("attempts") + 1)
    if taken:
        return ImportJob.objects.select_related("datastore").get(pk=job_id), token
    job = ImportJob.objects.filter(pk=job_id).values("status", "heartbeat_at").first()
    if job is None or job["status"] != JobStatus.IN_PROGRESS:
        return None
    raise BatchBusy(seconds_until_stale(job["heartbeat_at"], now))


def finish_heartbeat(job_id: str, token: str) -> None:
    ImportJob.objects.filter(pk=job_id, finisher=token).update(heartbeat_at=timezone.now())


# --- recovery ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recovery:
    """What a dead worker left behind: batches to queue again, and jobs whose finish step to queue again."""

    batches: list[tuple[str, int]]
    finishes: list[str]


def distributed_work_to_recover(*, assume_dead: bool = False) -> Recovery:
    """Batches whose worker stopped beating (and those whose task message may be lost: queued long ago in a job
    that nobody works on), and planned jobs with every batch done but nobody finishing them. Each batch is
    returned at most once per stale period (`queued_at`), so a batch waiting in a long queue is not flooded with
    copies. `assume_dead` when the calling process is the only worker: every RUNNING batch is then dead."""
    now = timezone.now()
    stale = _stale_before(now)
    running = ImportBatch.objects.filter(status=BatchStatus.RUNNING, job__status=JobStatus.IN_PROGRESS)
    if not assume_dead:
        running = running.filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale))
    running = running.filter(Q(queued_at__isnull=True) | Q(queued_at__lt=stale) | Q(queued_at__lt=F("heartbeat_at")))
    # A PENDING batch is normally in the broker's queue, and the broker gives back what a lost worker had taken,
    # but only after its visibility timeout. It is queued again as soon as its job has made no progress for a stale
    # period (nothing of the job runs anywhere), at most once per period: a copy of a message still queued is
    # refused by the batch's claim, so the cost of a wrong guess is one empty task.
    pending = ImportBatch.objects.filter(status=BatchStatus.PENDING, job__status=JobStatus.IN_PROGRESS,
                                         queued_at__lt=stale, job__heartbeat_at__lt=stale)
    batches: list[tuple[str, int]] = []
    for queryset in (running, pending):
        for pk, job_id, index in queryset.values_list("pk", "job_id", "index"):
            if ImportBatch.objects.filter(pk=pk, status__in=(BatchStatus.RUNNING, BatchStatus.PENDING)).update(
                    queued_at=now):
                batches.append((job_id, index))
    planned = ImportJob.objects.filter(status=JobStatus.IN_PROGRESS, plan__isnull=False).exclude(
        batches__status__in=(BatchStatus.PENDING, BatchStatus.RUNNING))
    if not assume_dead:
        planned = planned.filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale))
    finishes = list(planned.values_list("id", flat=True).distinct())
    if assume_dead:
        ImportBatch.objects.filter(job_id__in=[job_id for job_id, _ in batches],
                                   status=BatchStatus.RUNNING).update(heartbeat_at=None)
        ImportJob.objects.filter(pk__in=finishes).update(heartbeat_at=None)
    return Recovery(batches=batches, finishes=finishes)
