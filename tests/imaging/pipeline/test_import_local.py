"""Local-folder imports in process: the import_dicom command, quotas, an unwritable output, the admin action."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from imaging.models import ImageSet, ImportJob
from imaging.services.imports import import_job_start, import_job_start_local
from tests.dicomgen import ct_bytes
from tests.local_store import manage_in_own_process

pytestmark = pytest.mark.django_db(transaction=True)

def write_series(folder: Path, count: int) -> None:
    study, series = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"{n:03}.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=n, seed=n))


def test_local_folder_import_keeps_manifests_in_the_data_dir(datastore, tmp_path, store_settings):
    write_series(tmp_path / "in" / "a" / "b", 3)
    (tmp_path / "in" / "junk.bin").write_bytes(b"junk" * 100)
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(tmp_path / "in")])
    job.refresh_from_db()
    assert job.status == "COMPLETED"
    out = tmp_path / "imports" / f"{datastore.id}-DicomImport-{job.id}"
    summary = json.loads((out / "job-output-manifest.json").read_text())["jobSummary"]
    assert summary["numberOfScannedFiles"] == 4 and summary["numberOfImportedFiles"] == 3
    assert len((out / "SUCCESS" / "success.ndjson").read_text().splitlines()) == 3
    assert "junk.bin" in (out / "FAILURE" / "failure.ndjson").read_text()
    assert (out / "WARNING" / "warning.ndjson").read_text() == ""
    assert ImageSet.objects.filter(datastore=datastore).count() == 1
    assert (job.scanned_files, job.imported_files, job.failed_files) == (4, 3, 1)


def test_file_count_quota_fails_the_job_before_writing(datastore, tmp_path, store_settings):
    store_settings.APERTURE_IMPORT_MAX_FILES = 2
    write_series(tmp_path / "in", 3)
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(tmp_path / "in")])
    job.refresh_from_db()
    assert job.status == "FAILED"
    assert job.message == "DICOM import job has failed. FILE_COUNTS_LIMIT_EXCEEDED"
    assert not ImageSet.objects.exists()
    assert not (tmp_path / "blobs" / "datastores" / datastore.id / "frames").exists()


def test_a_failed_job_writes_its_manifests_with_its_status_and_message(datastore, tmp_path, store_settings):
    """Not the output probe's empty `{}`: the operator reading the bucket sees why the job failed."""
    store_settings.APERTURE_IMPORT_MAX_FILES = 2
    write_series(tmp_path / "in", 3)
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(tmp_path / "in")])
    out = tmp_path / "imports" / f"{datastore.id}-DicomImport-{job.id}"
    summary = json.loads((out / "job-output-manifest.json").read_text())["jobSummary"]
    assert summary["jobId"] == job.id and summary["jobStatus"] == "FAILED"
    assert summary["message"] == "DICOM import job has failed. FILE_COUNTS_LIMIT_EXCEEDED"
    assert (summary["numberOfImportedFiles"], summary["numberOfGeneratedImageSets"]) == (0, 0)
    for name in ("SUCCESS/success.ndjson", "FAILURE/failure.ndjson", "WARNING/warning.ndjson"):
        assert (out / name).read_text() == ""


def test_total_size_quota(datastore, tmp_path, store_settings):
    store_settings.APERTURE_IMPORT_MAX_BYTES = 1000
    write_series(tmp_path / "in", 1)
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(tmp_path / "in")])
    job.refresh_from_db()
    assert job.status == "FAILED" and "FILE_SIZE_LIMIT_EXCEEDED" in job.message


def test_unwritable_output_fails_the_job(datastore, tmp_path):
    write_series(tmp_path / "in", 1)
    answer = import_job_start(
        datastore_id=datastore.id, client_token="unwritable", data_access_role_arn="arn:aws:iam::123456789012:role/r",
        input_s3_uri="s3://unused/", output_s3_uri="file:///proc/aperture-cannot-write/",
        input_paths=[str(tmp_path / "in")],
    )
    job = ImportJob.objects.get(pk=answer["jobId"])
    assert job.status == "FAILED" and "cannot be written" in job.message
    assert not ImageSet.objects.exists()


def test_worker_processes_give_the_same_result(datastore, tmp_path, store_settings):
    store_settings.APERTURE_IMPORT_CONCURRENCY = 2
    write_series(tmp_path / "in", 4)
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(tmp_path / "in")])
    job.refresh_from_db()
    assert job.status == "COMPLETED" and job.imported_files == 4
    assert ImageSet.objects.get(datastore=datastore).number_of_instances == 4


def test_import_dicom_command(tmp_path):
    """The command end to end in its own process, as an operator runs it."""
    run, datastore_id = manage_in_own_process(tmp_path / "data")
    write_series(tmp_path / "series", 2)
    result = run("import_dicom", "--datastore", datastore_id, str(tmp_path / "series"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["numberOfImportedFiles"] == 2 and summary["numberOfGeneratedImageSets"] == 1
    missing = run("import_dicom", "--datastore", datastore_id, str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def test_admin_folder_import_is_limited_to_import_roots(admin_client, datastore, tmp_path, store_settings):
    allowed = tmp_path / "allowed"
    write_series(allowed / "s1", 2)
    store_settings.APERTURE_IMPORT_ROOTS = [str(allowed)]
    url = f"/admin/imaging/datastore/{datastore.id}/import-folder/"
    page = admin_client.get(url)
    assert page.status_code == 200
    refused = admin_client.post(url, {"folder": str(tmp_path)})
    assert refused.status_code == 200 and b"not under" in refused.content
    escaped = admin_client.post(url, {"folder": str(allowed / ".." )})
    assert escaped.status_code == 200 and b"not under" in escaped.content
    accepted = admin_client.post(url, {"folder": str(allowed / "s1")})
    assert accepted.status_code == 302
    job = ImportJob.objects.get(datastore=datastore)
    assert job.status == "COMPLETED" and job.imported_files == 2
    detail = admin_client.get(f"/admin/imaging/importjob/{job.id}/change/")
    assert detail.status_code == 200 and b"numberOfImportedFiles" in detail.content


def test_a_job_interrupted_too_often_fails_instead_of_looping(datastore, tmp_path):
    from imaging.pipeline.job import MAX_ATTEMPTS
    from imaging.services.imports import import_job_run

    write_series(tmp_path / "in", 1)
    job = ImportJob.objects.create(datastore=datastore, data_access_role_arn="arn:aws:iam::123456789012:role/r",
                                   input_s3_uri="s3://unused/", output_s3_uri=(tmp_path / "out").as_uri() + "/",
                                   input_paths=[str(tmp_path / "in")], status="IN_PROGRESS", attempts=MAX_ATTEMPTS)
    import_job_run(job_id=job.id)  # its heartbeat is empty: the last worker is gone
    job.refresh_from_db()
    assert job.status == "FAILED" and "interrupted" in job.message
    assert not ImageSet.objects.exists()


def test_a_primary_locked_past_the_merge_wait_fails_only_its_files(datastore, tmp_path, store_settings):
    from imaging.models import ImageSetState

    study, series, other_series = generate_uid(), generate_uid(), generate_uid()
    first = tmp_path / "first"
    first.mkdir()
    (first / "a.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=1))
    assert import_job_start_local(datastore_id=datastore.id, paths=[str(first)]).status in ("SUBMITTED", "COMPLETED")
    primary = ImageSet.objects.get(datastore=datastore, series_instance_uid=series)
    ImageSet.objects.filter(pk=primary.pk).update(state=ImageSetState.LOCKED)  # an update or copy holds it
    store_settings.APERTURE_IMPORT_MERGE_WAIT_SECONDS = 1
    second = tmp_path / "second"
    second.mkdir()
    (second / "b.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=2))
    (second / "c.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=other_series, instance_number=1))
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(second)])
    job.refresh_from_db()
    assert job.status == "COMPLETED", job.message
    out = tmp_path / "imports" / f"{datastore.id}-DicomImport-{job.id}"
    failure = [json.loads(line) for line in (out / "FAILURE" / "failure.ndjson").read_text().splitlines()]
    assert [line["inputFile"].rsplit("/", 1)[-1] for line in failure] == ["b.dcm"]
    assert failure[0]["exception"]["exceptionType"] == "ConflictException"
    assert "stayed locked" in failure[0]["exception"]["message"]
    success = (out / "SUCCESS" / "success.ndjson").read_text()
    assert "c.dcm" in success and "b.dcm" not in success
    primary.refresh_from_db()
    assert primary.latest_version == 1 and primary.state == ImageSetState.LOCKED  # untouched
    assert (job.imported_files, job.failed_files) == (1, 1)
    # b.dcm's frames were removed again; a.dcm's and c.dcm's are stored.
    frames = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file() and "/frames/" in str(p)]
    assert len(frames) == 2


def test_server_start_sweeps_temporary_blob_files_left_by_a_crash(store_settings, tmp_path, caplog):
    import logging
    import os
    import time

    from imaging.services.recovery import background_work_recover

    temporary = tmp_path / "blobs" / ".tmp"
    temporary.mkdir(parents=True)
    (temporary / "999-1-cafe").write_bytes(b"cut off")
    os.utime(temporary / "999-1-cafe", (time.time() - 7200,) * 2)
    with caplog.at_level(logging.INFO, logger="imaging.services.recovery"):
        background_work_recover()
    assert list(temporary.iterdir()) == []
    assert "removed 1 temporary blob file(s)" in caplog.text


def test_only_uploaded_inputs_are_deleted_when_a_job_ends(datastore, tmp_path, store_settings):
    uploaded = tmp_path / "uploads" / "batch1"
    write_series(uploaded, 1)
    own = tmp_path / "server-folder"
    write_series(own, 1)
    assert import_job_start_local(datastore_id=datastore.id, paths=[str(uploaded)]).status in ("SUBMITTED", "COMPLETED")
    assert import_job_start_local(datastore_id=datastore.id, paths=[str(own)]).status in ("SUBMITTED", "COMPLETED")
    assert not uploaded.exists()  # the admin's upload folder, emptied once its job ended
    assert len(list(own.iterdir())) == 1  # a folder on the server is never touched


def test_a_file_over_a_search_key_limit_leaves_no_frames_behind(datastore, tmp_path, store_settings):
    from tests.dicomgen import ct_dataset, to_bytes

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.dcm").write_bytes(ct_bytes(study_uid=generate_uid(), series_uid=generate_uid()))
    long_study_id = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid(), seed=7)
    long_study_id.StudyID = "X" * 17  # SH and SPEC 4.6 allow 16
    (folder / "long-study-id.dcm").write_bytes(to_bytes(long_study_id))
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    job.refresh_from_db()
    assert job.status == "COMPLETED" and job.imported_files == 1 and job.failed_files == 1
    failure = next(line for line in job.outcome["lines"] if "exception" in line)
    assert failure["inputFile"].endswith("long-study-id.dcm")
    assert "StudyID has length 17, more than the allowed 16" in failure["exception"]["message"]
    # The worker had already written the failed file's frame: only the good file's one frame is stored.
    frames = [path for path in (tmp_path / "blobs").rglob("*") if path.is_file() and "/frames/" in str(path)]
    assert len(frames) == 1
