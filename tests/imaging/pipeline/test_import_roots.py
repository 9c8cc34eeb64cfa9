"""Import folders are boundaries (issue 11 item 8): real symlinks, broken links, FIFOs and files that change between
listing and reading, through the entry points an operator uses (manage.py import_dicom, the admin's folder import)
and the job driver. Each bad entry fails alone with a reason in failure.ndjson; the rest of the job is imported."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from imaging.models import ImageSet, ImportJob
from imaging.pipeline.sources import S3Settings, SourceError, list_objects, read_object
from imaging.pipeline.process import process_source
from imaging.services.imports import import_job_run, import_job_start_local
from tests.dicomgen import ct_bytes
from tests.local_store import manage_in_own_process

pytestmark = pytest.mark.django_db(transaction=True)

NO_S3 = S3Settings("", "", "", "us-east-1")
OUTSIDE = "The file is a link to a place outside the folder being imported; it was not read"
FOLDER_OUTSIDE = "The folder is a link to a place outside the folder being imported; it was not read"


def write_series(folder: Path, count: int, study: str | None = None) -> str:
    study, series = study or generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"{n:03}.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=n, seed=n))
    return study


def booby_trapped_folder(tmp_path: Path) -> tuple[Path, str]:
    """An import folder holding two good files and every kind of entry that must not be read, next to a folder of
    'someone else's' studies that links point into. Returns the folder and the outside study's UID."""
    root = tmp_path / "root"
    write_series(root / "series", 2)
    outside_study = write_series(tmp_path / "outside", 1)
    (root / "escape.dcm").symlink_to(tmp_path / "outside" / "000.dcm")
    (root / "relative-escape.dcm").symlink_to(Path("..") / "outside" / "000.dcm")
    (root / "broken.dcm").symlink_to(root / "nowhere.dcm")
    (root / "linked-folder").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "alias.dcm").symlink_to(root / "series" / "000.dcm")  # inside the folder: the same file, read once
    os.mkfifo(root / "pipe.dcm")  # would block a worker that opened it
    return root, outside_study


def failures_by_name(out: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in (out / "FAILURE" / "failure.ndjson").read_text().splitlines()]
    return {Path(line["inputFile"]).name: line["exception"] for line in lines}


EXPECTED_FAILURES = {
    "escape.dcm": OUTSIDE,
    "relative-escape.dcm": OUTSIDE,
    "broken.dcm": "The file is a broken link",
    "linked-folder": FOLDER_OUTSIDE,
    "pipe.dcm": "The file is not a regular file",
}


def test_links_out_of_the_folder_and_unreadable_entries_fail_alone(datastore, tmp_path):
    root, outside_study = booby_trapped_folder(tmp_path)
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(root)])
    job.refresh_from_db()
    assert job.status == "COMPLETED", job.message
    out = tmp_path / "imports" / f"{datastore.id}-DicomImport-{job.id}"
    failures = failures_by_name(out)
    assert {name: failure["message"] for name, failure in failures.items()} == EXPECTED_FAILURES
    assert {failure["exceptionType"] for failure in failures.values()} == {"ValidationException"}
    success = [json.loads(line)["inputFile"] for line in (out / "SUCCESS" / "success.ndjson").read_text().splitlines()]
    assert sorted(success) == [str(root / "series" / "000.dcm"), str(root / "series" / "001.dcm")]
    assert not ImageSet.objects.filter(study_instance_uid=outside_study).exists()
    assert ImageSet.objects.get(datastore=datastore).number_of_instances == 2
    assert (job.scanned_files, job.imported_files, job.failed_files) == (7, 2, 5)


def test_import_dicom_command_refuses_what_leaves_the_folder(tmp_path):
    """The operator's command in its own process: the job completes, the outside study is not imported."""
    run, datastore_id = manage_in_own_process(tmp_path / "data")
    root, _ = booby_trapped_folder(tmp_path)
    result = run("import_dicom", "--datastore", datastore_id, str(root))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["numberOfScannedFiles"], summary["numberOfImportedFiles"]) == (7, 2)
    assert summary["numberOfFilesWithCustomerError"] == 5 and summary["numberOfFilesWithServerError"] == 0
    out = Path(summary["outputS3Uri"].removeprefix("file://"))
    assert {name: failure["message"] for name, failure in failures_by_name(out).items()} == EXPECTED_FAILURES


def test_admin_folder_import_keeps_links_inside_the_import_root(admin_client, datastore, tmp_path, store_settings):
    allowed = tmp_path / "allowed"
    write_series(allowed / "s1", 2)
    secret_study = write_series(tmp_path / "elsewhere", 1)
    (allowed / "s1" / "secret.dcm").symlink_to(tmp_path / "elsewhere" / "000.dcm")
    (allowed / "s1" / "gone.dcm").symlink_to(allowed / "s1" / "deleted.dcm")
    store_settings.APERTURE_IMPORT_ROOTS = [str(allowed)]
    response = admin_client.post(f"/admin/imaging/datastore/{datastore.id}/import-folder/", {"folder": str(allowed)})
    assert response.status_code == 302
    job = ImportJob.objects.get(datastore=datastore)
    assert job.status == "COMPLETED" and (job.imported_files, job.failed_files) == (2, 2)
    assert not ImageSet.objects.filter(study_instance_uid=secret_study).exists()
    page = admin_client.get(f"/admin/imaging/importjob/{job.id}/change/").content.decode()
    assert "secret.dcm" in page and "outside the folder being imported" in page
    assert "gone.dcm" in page and "broken link" in page


def test_files_that_change_between_listing_and_reading_fail_alone(tmp_path):
    root = tmp_path / "root"
    write_series(root / "a", 3)
    write_series(root / "b", 1)
    write_series(tmp_path / "outside", 1)
    listed = {Path(item.display_name).relative_to(root).as_posix(): item
              for item in list_objects(root.as_uri(), NO_S3)}
    assert read_object(listed["a/000.dcm"].uri, NO_S3)[128:132] == b"DICM"

    (root / "a" / "001.dcm").unlink()  # vanished
    with pytest.raises(SourceError, match="cannot be read: No such file"):
        read_object(listed["a/001.dcm"].uri, NO_S3)

    (root / "a" / "002.dcm").unlink()
    (root / "a" / "002.dcm").symlink_to(tmp_path / "outside" / "000.dcm")  # swapped for a link out
    with pytest.raises(SourceError, match="replaced by a link"):
        read_object(listed["a/002.dcm"].uri, NO_S3)

    shutil.move(root / "b", tmp_path / "b-moved")
    (root / "b").symlink_to(tmp_path / "b-moved", target_is_directory=True)  # its folder swapped for a link
    with pytest.raises(SourceError, match="folder on the file's path was replaced by a link"):
        read_object(listed["b/000.dcm"].uri, NO_S3)

    # In the pipeline that is the file's own failure, of the kind a bad file gets.
    result = process_source(listed["a/001.dcm"].uri, listed["a/001.dcm"].display_name, NO_S3, "HTJ2K")
    assert (result.ok, result.exception_type) == (False, "ValidationException")


def test_a_folder_swapped_for_a_link_after_submission_fails_the_job_cleanly(datastore, tmp_path):
    root = tmp_path / "root"
    write_series(root, 1)
    write_series(tmp_path / "outside", 1)
    job = ImportJob.objects.create(datastore=datastore, data_access_role_arn="arn:aws:iam::123456789012:role/r",
                                   input_s3_uri=root.as_uri(), output_s3_uri=(tmp_path / "out").as_uri() + "/",
                                   input_paths=[str(root)])
    shutil.rmtree(root)
    root.symlink_to(tmp_path / "outside", target_is_directory=True)
    import_job_run(job_id=job.id)
    job.refresh_from_db()
    assert job.status == "FAILED" and "replaced by a link" in job.message
    assert not ImageSet.objects.exists()
