"""A job distributed over task workers (imaging/pipeline/batches.py), in process: the same outcome and manifests as a
job run in one process, and the bookkeeping that makes every step safe to replay: a replayed batch records nothing
twice, a batch held by a live worker is retried later, a stale batch is re-queued and resumes, a file that ends its
worker twice fails alone, the finish step is claimed once and a finisher taken over persists nothing.

The tasks run in the calling thread on a backend that says it distributes work, so the job takes Celery's path."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from pydicom.uid import generate_uid

from imaging.models import BatchStatus, ImageSet, ImportBatch, ImportJob, JobStatus
from imaging.pipeline.batches import (
    CRASHED_FILE_MESSAGE,
    BatchBusy,
    batch_claim,
    batch_result_record,
    distributed_work_to_recover,
    finish_claim,
    stale_seconds,
)
from imaging.pipeline.job import JobLimits, claim_job, job_batch_run, job_finish, job_plan, s3_settings
from imaging.pipeline.pool import process_file
from imaging.services.imports import import_batch_run, import_job_finish, import_job_start_local
from imaging.storage import blob_store
from imaging.tasks import RetryLater
from imaging.tasks.backends.eager import EagerBackend
from tests.dicomgen import ct_bytes
from tests.local_store import local_datastore_create

pytestmark = pytest.mark.django_db(transaction=True)


class DistributingEagerBackend(EagerBackend):
    """Celery's way of running a job (plan, one task per batch, finish), every task in the calling thread."""

    distributes_work = True


DISTRIBUTING = f"{__name__}.DistributingEagerBackend"


@pytest.fixture
def distributing(store_settings):
    store_settings.APERTURE_TASK_BACKEND = DISTRIBUTING
    store_settings.APERTURE_IMPORT_BATCH_FILES = 2
    return store_settings


def write_inputs(folder: Path, count: int) -> None:
    study, series = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"{n:03}.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=n, seed=n))
    (folder / "junk.bin").write_bytes(b"junk" * 100)


def manifests(tmp_path: Path, job: ImportJob) -> dict[str, object]:
    """The job's four manifests with its own ids taken out, to compare two jobs over the same files."""
    out = tmp_path / "imports" / f"{job.datastore_id}-DicomImport-{job.id}"
    texts = {name: (out / name).read_text() for name in ("SUCCESS/success.ndjson", "WARNING/warning.ndjson",
                                                          "FAILURE/failure.ndjson", "job-output-manifest.json")}
    for value in (job.id, job.datastore_id):
        texts = {name: text.replace(value, "ID") for name, text in texts.items()}
    image_sets = ImageSet.objects.filter(datastore_id=job.datastore_id).values_list("id", flat=True)
    for image_set_id in image_sets:
        texts = {name: text.replace(image_set_id, "IMAGESET") for name, text in texts.items()}
    return {name: sorted(text.splitlines()) if name.endswith("ndjson") else json.loads(text)
            for name, text in texts.items()}


def planned_job(datastore, tmp_path: Path, count: int) -> ImportJob:
    """A claimed job split into batches of two files, none of them run yet."""
    write_inputs(tmp_path / "in", count)
    job = ImportJob.objects.create(datastore=datastore, data_access_role_arn="arn:aws:iam::123456789012:role/r",
                                   input_s3_uri="s3://unused/", output_s3_uri=(tmp_path / "out").as_uri() + "/",
                                   input_paths=[str(tmp_path / "in")])
    job = claim_job(job.id)
    assert job_plan(job, s3=s3_settings(), batch_files=2) is None
    return ImportJob.objects.select_related("datastore").get(pk=job.id)


def make_stale(batch_index: int | None = None, job: ImportJob | None = None) -> None:
    old = timezone.now() - timedelta(hours=1)
    if batch_index is not None:
        ImportBatch.objects.filter(index=batch_index).update(heartbeat_at=old, queued_at=old)
    if job is not None:
        ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=old)


def frame_blob_count(tmp_path: Path) -> int:
    return sum(1 for path in (tmp_path / "blobs").rglob("*") if path.is_file() and "/frames/" in str(path))


def test_a_distributed_job_has_the_outcome_and_manifests_of_a_job_run_in_one_process(distributing, tmp_path):
    write_inputs(tmp_path / "in", 5)
    distributing.APERTURE_TASK_BACKEND = distributing.APERTURE_TASK_BACKEND_ALIASES["eager"]
    local = import_job_start_local(datastore_id=local_datastore_create().id, paths=[str(tmp_path / "in")])
    distributing.APERTURE_TASK_BACKEND = DISTRIBUTING
    spread = import_job_start_local(datastore_id=local_datastore_create().id, paths=[str(tmp_path / "in")])
    local.refresh_from_db()
    spread.refresh_from_db()
    assert local.status == spread.status == JobStatus.COMPLETED
    assert local.plan is None and not local.batches.exists()
    assert spread.plan["batches"] == 3 and spread.batches.filter(status=BatchStatus.DONE).count() == 3
    assert manifests(tmp_path, spread) == manifests(tmp_path, local)
    assert (spread.scanned_files, spread.imported_files, spread.failed_files) == (6, 5, 1)
    # The job has ended: its batches no longer keep a copy of every file's metadata.
    assert list(spread.batches.values_list("results", "files").distinct()) == [([], [])]
    assert ImageSet.objects.filter(datastore_id=spread.datastore_id).count() == 1


def test_a_replayed_planning_task_does_not_split_the_input_twice(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 3)
    assert job_plan(job, s3=s3_settings(), batch_files=1) is None
    assert ImportBatch.objects.filter(job=job).count() == 2 and job.plan["batches"] == 2


def test_a_replayed_batch_records_nothing_twice(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 3)
    import_batch_run(job_id=job.id, index=0)
    batch = ImportBatch.objects.get(job=job, index=0)
    assert batch.status == BatchStatus.DONE and len(batch.results) == 2 and batch.attempts == 1
    frames = frame_blob_count(tmp_path)
    import_batch_run(job_id=job.id, index=0)  # the broker delivers it again
    again = ImportBatch.objects.get(job=job, index=0)
    assert (again.results, again.attempts, again.claim) == (batch.results, 1, batch.claim)
    assert frame_blob_count(tmp_path) == frames
    assert ImportJob.objects.get(pk=job.pk).scanned_files == 2  # counted once


def test_a_batch_held_by_a_live_worker_is_retried_later_not_dropped(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 1)
    batch_claim(job_id=job.id, index=0, worker="a@host:1")
    with pytest.raises(RetryLater) as retry:
        import_batch_run(job_id=job.id, index=0)  # a redelivered copy while the first worker still beats
    assert 0 < retry.value.seconds <= settings.APERTURE_IMPORT_STALE_SECONDS + 1
    assert ImportBatch.objects.get(job=job, index=0).worker == "a@host:1"


def test_a_stale_batch_is_requeued_once_and_resumes_after_its_last_result(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 1)
    first = batch_claim(job_id=job.id, index=0, worker="a@host:1")
    job_file = first.files[0]
    result = process_file(job_file[0], job_file[1], s3_settings(), "HTJ2K", None)
    assert batch_result_record(first, result)
    assert distributed_work_to_recover().batches == []  # its worker still beats
    make_stale(0)
    assert distributed_work_to_recover().batches == [(job.id, 0)]
    assert distributed_work_to_recover().batches == []  # queued again once per stale period, not every run
    second = batch_claim(job_id=job.id, index=0, worker="b@host:2")
    assert second.next_position == 1 and second.crashes == 1
    assert not batch_result_record(first, result)  # the dead worker, were it back, writes nothing more
    assert job_batch_run(job, second, limits=JobLimits.from_settings())
    batch = ImportBatch.objects.get(job=job, index=0)
    assert [item["input_file"] for item in batch.results] == [name for _, name in batch.files]
    assert batch.worker == "b@host:2" and batch.attempts == 2


def test_a_file_that_ends_its_worker_twice_fails_alone(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 2)
    batch_claim(job_id=job.id, index=0, worker="a@host:1")
    make_stale(0)
    batch_claim(job_id=job.id, index=0, worker="b@host:2")
    make_stale(0)
    third = batch_claim(job_id=job.id, index=0, worker="c@host:3")
    assert third.next_file_failed_alone
    assert job_batch_run(job, third)
    results = ImportBatch.objects.get(job=job, index=0).results
    assert results[0]["ok"] is False and results[0]["message"] == CRASHED_FILE_MESSAGE
    assert results[1]["ok"] is True  # the next file ran as usual


def test_the_finish_step_is_claimed_once(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 1)
    import_batch_run(job_id=job.id, index=0)  # the last batch queues the finish, which completes the job
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and ImageSet.objects.count() == 1
    assert finish_claim(job.id) is None
    import_job_finish(job_id=job.id)  # a duplicate finish task does nothing
    assert ImageSet.objects.count() == 1 and ImageSet.objects.get().versions.count() == 1


def test_a_second_finisher_waits_for_a_live_one(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 1)
    ImportBatch.objects.filter(job=job).update(status=BatchStatus.DONE)
    assert finish_claim(job.id) is not None
    with pytest.raises(BatchBusy):
        finish_claim(job.id)
    with pytest.raises(RetryLater):
        import_job_finish(job_id=job.id)


def test_a_finisher_taken_over_persists_nothing(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 1)
    claim = batch_claim(job_id=job.id, index=0, worker="a@host:1")
    assert job_batch_run(job, claim)
    frames = frame_blob_count(tmp_path)
    slow, _ = finish_claim(job.id)
    make_stale(job=job)
    finish_claim(job.id)  # the slow finisher was taken for dead
    assert job_finish(slow, s3=s3_settings(), blob_store=blob_store()) is None
    assert not ImageSet.objects.exists() and ImportJob.objects.get(pk=job.pk).outcome is None
    assert frame_blob_count(tmp_path) == frames == 1  # its frames are the new finisher's too: kept


def test_recovery_queues_the_finish_of_a_job_nobody_finishes(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 1)
    claim = batch_claim(job_id=job.id, index=0, worker="a@host:1")
    assert job_batch_run(job, claim)  # the worker died before it could queue the finish
    assert distributed_work_to_recover().finishes == []
    make_stale(job=job)
    assert distributed_work_to_recover().finishes == [job.id]


def test_a_pending_batch_is_queued_again_only_when_its_job_has_stalled(datastore, tmp_path):
    job = planned_job(datastore, tmp_path, 1)
    assert distributed_work_to_recover().batches == []
    make_stale(0, job=job)
    assert distributed_work_to_recover().batches == [(job.id, 0)]
    assert distributed_work_to_recover().batches == []  # once per stale period, not on every round


def test_a_pending_batch_a_vanished_worker_held_is_queued_again_after_one_stale_period(datastore, tmp_path):
    """A worker that took the message and died before claiming the batch: the broker would give it back only after
    its visibility timeout; recovery does once nothing of the job has run for one stale period."""
    job = planned_job(datastore, tmp_path, 1)
    just_stale = timezone.now() - timedelta(seconds=stale_seconds() + 2)
    ImportBatch.objects.filter(job=job).update(queued_at=just_stale)
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())  # another batch of the job beats
    assert distributed_work_to_recover().batches == []
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=just_stale)
    assert distributed_work_to_recover().batches == [(job.id, 0)]
