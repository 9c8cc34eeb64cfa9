"""The import job driver (imaging/pipeline/job.py) on its own: the outcome it returns, the claim, recovery, and
what it removes when a job fails. The service that records outcomes is tested through test_import_*.py."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from pydicom.uid import generate_uid

from imaging.models import ImageSet, ImportJob, JobStatus
from imaging.pipeline import job as job_driver
from imaging.pipeline.discover import discover
from imaging.pipeline.job import JobLimits, JobOutcome, claim_job, jobs_to_recover, run_job, s3_settings
from imaging.pipeline.sources import S3Settings, SourceError
from imaging.storage import blob_store
from tests.dicomgen import ct_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def write_series(folder: Path, count: int) -> None:
    study, series = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"{n:03}.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=n, seed=n))


def queued_job(datastore, tmp_path: Path, **fields) -> ImportJob:
    return ImportJob.objects.create(datastore=datastore, data_access_role_arn="arn:aws:iam::123456789012:role/r",
                                    input_s3_uri="s3://unused/", output_s3_uri=(tmp_path / "out").as_uri() + "/",
                                    input_paths=[str(tmp_path / "in")], **fields)


def frame_files(tmp_path: Path) -> list[Path]:
    return [path for path in (tmp_path / "blobs").rglob("*") if path.is_file() and "/frames/" in str(path)]


def test_a_job_that_imports_returns_completed_and_leaves_recording_to_the_caller(datastore, tmp_path):
    write_series(tmp_path / "in", 2)
    job = claim_job(queued_job(datastore, tmp_path).id)
    outcome = run_job(job, s3=s3_settings(), blob_store=blob_store())
    assert outcome == JobOutcome(job_id=job.id, status=JobStatus.COMPLETED, message="")
    job.refresh_from_db()
    assert job.status == JobStatus.IN_PROGRESS  # the driver does not record its outcome
    assert len(job.outcome["lines"]) == 2 and ImageSet.objects.count() == 1
    assert len(frame_files(tmp_path)) == 2


def test_a_quota_exceeded_is_a_failed_outcome_with_its_reason(datastore, tmp_path):
    write_series(tmp_path / "in", 3)
    job = claim_job(queued_job(datastore, tmp_path).id)
    limits = replace(JobLimits.from_settings(), max_files=2)
    outcome = run_job(job, s3=s3_settings(), blob_store=blob_store(), limits=limits)
    assert outcome.status == JobStatus.FAILED
    assert outcome.message == "DICOM import job has failed. FILE_COUNTS_LIMIT_EXCEEDED"


def test_a_job_that_fails_after_its_files_were_processed_removes_their_frames(datastore, tmp_path, monkeypatch):
    write_series(tmp_path / "in", 2)
    job = claim_job(queued_job(datastore, tmp_path).id)

    def persist_fails(**kwargs):
        assert len(frame_files(tmp_path)) == 2  # the workers wrote them
        raise RuntimeError("database gone")

    monkeypatch.setattr(job_driver, "persist_instances", persist_fails)
    outcome = run_job(job, s3=s3_settings(), blob_store=blob_store())
    assert outcome == JobOutcome(job_id=job.id, status=JobStatus.FAILED,
                                 message="DICOM import job has failed: internal error")
    assert frame_files(tmp_path) == [] and not ImageSet.objects.exists()


def test_a_job_is_claimed_once(datastore, tmp_path):
    queued = queued_job(datastore, tmp_path)
    assert claim_job(queued.id) is not None
    assert claim_job(queued.id) is None  # its heartbeat is fresh: a live worker has it


def test_recovery_finds_queued_and_abandoned_jobs(datastore, tmp_path):
    queued = queued_job(datastore, tmp_path)
    running = claim_job(queued_job(datastore, tmp_path).id)
    done = queued_job(datastore, tmp_path, status=JobStatus.COMPLETED)
    assert jobs_to_recover() == []  # the queued job is in the queue, the running job's heartbeat is fresh
    ImportJob.objects.filter(pk=queued.pk).update(submitted_at=timezone.now() - timedelta(hours=1))
    assert jobs_to_recover() == [queued.id]  # waited three stale periods: its message may be lost
    assert jobs_to_recover() == []  # queued again once, not at every recovery run
    assert set(jobs_to_recover(assume_dead=True)) == {queued.id, running.id}
    running.refresh_from_db()
    assert running.heartbeat_at is None and done.id not in jobs_to_recover(assume_dead=True)


def test_discovery_enforces_the_quotas(tmp_path):
    write_series(tmp_path / "in", 2)
    s3 = S3Settings(endpoint_url="", access_key_id="", secret_access_key="", region="us-east-1")
    uri = (tmp_path / "in").as_uri()
    assert len(discover([uri, uri], s3, max_files=2, max_bytes=10**9)) == 2  # a file reached twice is read once
    with pytest.raises(SourceError, match="FILE_SIZE_LIMIT_EXCEEDED"):
        discover([uri], s3, max_files=2, max_bytes=10)
