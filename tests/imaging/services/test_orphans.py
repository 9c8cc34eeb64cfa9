"""Orphaned blobs (issue 11 item 10): the store's listing on each backend, the sweep against real rows, what it
must keep (referenced blobs, young ones, an unfinished job's), the management command, and the sweep on S3."""
from __future__ import annotations

import gzip
import json
import os
import secrets
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from pydicom.uid import generate_uid

from imaging.models import Datastore, ImageFrame, ImageSet, ImageSetVersion, ImportJob
from imaging.services.datastores import datastore_create
from imaging.services.imagesets import imageset_frame, imageset_metadata_blob
from imaging.services.imageset_writes import imageset_delete
from imaging.services.imports import import_job_start_local
from imaging.services.orphans import orphan_blobs_sweep
from imaging.storage import blob_store
from imaging.storage.filesystem import FilesystemBlobStore
from imaging.storage.memory import MemoryBlobStore
from tests.dicomgen import ct_bytes

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = 3600


@pytest.fixture
def store_settings(store_settings):
    """The conftest's in-process store, with an hour's grace for orphans (the conftest's `datastore` uses it)."""
    store_settings.APERTURE_ORPHAN_GRACE_SECONDS = HOUR
    return store_settings


def import_series(datastore: Datastore, folder: Path, count: int = 2) -> ImageSet:
    study, series = generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    for n in range(count):
        (folder / f"{n}.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=n, seed=n))
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    job.refresh_from_db()
    assert job.status == "COMPLETED", job.message
    return ImageSet.objects.get(datastore=datastore, series_instance_uid=series)


def age(root: Path, key: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(root / key, (then, then))


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts}


def test_filesystem_and_memory_stores_list_keys_with_times(tmp_path):
    for store in (FilesystemBlobStore(tmp_path / "fs"), MemoryBlobStore()):
        store.put("datastores/d1/frames/ab/abc", b"1")
        store.put("datastores/d1/imagesets/i1/metadata-v1-x.json.gz", b"2")
        store.put("datastores/d2/frames/cd/cde", b"3")
        store.put("other/key", b"4")
        listed = {info.key: info.modified_at for info in store.list_blobs("datastores/d1/")}
        assert set(listed) == {"datastores/d1/frames/ab/abc", "datastores/d1/imagesets/i1/metadata-v1-x.json.gz"}
        assert all(abs(modified - time.time()) < 60 for modified in listed.values())
        assert {info.key for info in store.list_blobs("datastores/d")} == set(listed) | {"datastores/d2/frames/cd/cde"}
        assert list(store.list_blobs("nothing/")) == []
    (tmp_path / "fs" / ".tmp").mkdir(exist_ok=True)
    (tmp_path / "fs" / ".tmp" / "cut-off").write_bytes(b"x")  # a write in flight is not a blob yet
    assert ".tmp/cut-off" not in {info.key for info in FilesystemBlobStore(tmp_path / "fs").list_blobs("")}


def test_sweep_removes_old_unreferenced_blobs_and_keeps_the_rest(datastore, tmp_path):
    image_set = import_series(datastore, tmp_path / "in")
    root = tmp_path / "blobs"
    referenced = files_under(root)
    store = blob_store()
    ds = f"datastores/{datastore.id}"
    orphans = [
        f"{ds}/imagesets/{image_set.id}/metadata-v2-0badc0de.json.gz",  # a version whose row never committed
        f"{ds}/imagesets/{'f' * 32}/metadata-v1-0badc0de.json.gz",  # an image set that never committed
        f"{ds}/frames/0b/{'0b' * 16}",  # a frame of a file whose job never persisted it
    ]
    young = f"{ds}/frames/0c/{'0c' * 16}"
    foreign = f"{ds}/exports/report.json"  # not a kind the sweep knows: never touched
    for key in [*orphans, young, foreign]:
        store.put(key, gzip.compress(json.dumps({"PatientName": "DOE^JANE"}).encode()))
    for key in [*orphans, foreign, *referenced]:
        age(root, key, 2 * HOUR)

    dry = orphan_blobs_sweep(dry_run=True)
    assert (dry["metadata"], dry["frames"], dry["removed"]) == (2, 1, 0)
    assert files_under(root) == referenced | set(orphans) | {young, foreign}

    done = orphan_blobs_sweep()
    assert (done["metadata"], done["frames"], done["removed"]) == (2, 1, 3)
    assert files_under(root) == referenced | {young, foreign}
    # What is left still reads back whole.
    document = json.loads(gzip.decompress(imageset_metadata_blob(datastore_id=datastore.id,
                                                                 image_set_id=image_set.id, version=None)))
    assert document["ImageSetID"] == image_set.id
    for frame in ImageFrame.objects.filter(image_set=image_set):
        assert imageset_frame(datastore_id=datastore.id, image_set_id=image_set.id, frame_id=frame.frame_id,
                              accept=None)[0]


def test_blobs_of_an_import_that_has_not_ended_are_kept(datastore, tmp_path):
    """A job cut off by a crash runs again and writes the same frame keys: its first attempt's blobs, however
    old, are not swept from under it until the job has ended."""
    import_series(datastore, tmp_path / "in")
    root = tmp_path / "blobs"
    job = ImportJob.objects.create(datastore=datastore, data_access_role_arn="arn:aws:iam::123456789012:role/r",
                                   input_s3_uri="s3://unused/", output_s3_uri="s3://unused/", status="IN_PROGRESS")
    ImportJob.objects.filter(pk=job.pk).update(submitted_at=job.submitted_at - timedelta(hours=5))
    frame = f"datastores/{datastore.id}/frames/0d/{'0d' * 16}"
    blob_store().put(frame, b"a frame of the interrupted first attempt")
    age(root, frame, 2 * HOUR)  # well past the grace period, but after the job was submitted

    assert orphan_blobs_sweep()["removed"] == 0
    assert frame in files_under(root)
    ImportJob.objects.filter(pk=job.pk).update(status="FAILED")
    assert orphan_blobs_sweep()["removed"] == 1
    assert frame not in files_under(root)


def test_a_deleted_image_set_leaves_nothing_behind(datastore, tmp_path):
    """Purging removes blobs after its commit; if a crash cuts that off, the rows name DELETED versions only."""
    image_set = import_series(datastore, tmp_path / "in")
    root = tmp_path / "blobs"
    before = files_under(root)
    metadata_key = ImageSetVersion.objects.get(image_set=image_set).metadata_key
    frame_keys = list(ImageFrame.objects.filter(image_set=image_set).values_list("blob_key", flat=True))
    saved = {key: (root / key).read_bytes() for key in [metadata_key, *frame_keys]}
    imageset_delete(datastore_id=datastore.id, image_set_id=image_set.id)
    for key, data in saved.items():  # as if the purge's deletes had never run
        blob_store().put(key, data)
        age(root, key, 2 * HOUR)
    assert files_under(root) == before
    assert orphan_blobs_sweep()["removed"] == 1 + len(frame_keys)
    assert files_under(root) == set()


def test_sweep_orphans_command(datastore, tmp_path):
    import_series(datastore, tmp_path / "in")
    key = f"datastores/{datastore.id}/imagesets/{'e' * 32}/metadata-v1-00000000.json.gz"
    blob_store().put(key, b"orphan")
    out = StringIO()
    call_command("sweep_orphans", "--dry-run", stdout=out)  # the orphan is younger than the grace period
    assert "0 metadata and 0 frame blob(s) referenced by nothing; nothing removed (dry run)" in out.getvalue()
    out = StringIO()
    call_command("sweep_orphans", "--dry-run", "--grace-seconds", "0", stdout=out)
    assert "1 metadata and 0 frame blob(s) referenced by nothing; nothing removed (dry run)" in out.getvalue()
    assert (tmp_path / "blobs" / key).exists()
    out = StringIO()
    call_command("sweep_orphans", "--grace-seconds", "0", stdout=out)
    assert "1 metadata and 0 frame blob(s) referenced by nothing; 1 removed" in out.getvalue()
    assert not (tmp_path / "blobs" / key).exists()


@pytest.mark.live
def test_sweep_on_the_s3_backend(seaweed, s3, settings, tmp_path):
    from tests.importing import ensure_bucket

    bucket = f"orphans-{secrets.token_hex(3)}"
    ensure_bucket(s3, bucket)
    settings.APERTURE_BLOB_STORE = f"s3://{bucket}/aperture"
    settings.APERTURE_S3_ENDPOINT_URL = seaweed.endpoint
    settings.APERTURE_S3_ACCESS_KEY_ID = seaweed.access_key
    settings.APERTURE_S3_SECRET_ACCESS_KEY = seaweed.secret_key
    settings.DATA_DIR = tmp_path
    settings.APERTURE_IMPORT_CONCURRENCY = 0
    datastore = Datastore.objects.get(pk=datastore_create(client_token=generate_uid()[-20:], name="s3")["datastoreId"])
    image_set = import_series(datastore, tmp_path / "in")
    store = blob_store()
    ds = f"datastores/{datastore.id}"
    orphans = {f"{ds}/imagesets/{image_set.id}/metadata-v9-0badc0de.json.gz", f"{ds}/frames/0e/{'0e' * 16}"}
    for key in orphans:
        store.put(key, b"orphan")

    listed = {info.key: info.modified_at for info in store.list_blobs(f"{ds}/")}
    assert orphans <= set(listed) and all(abs(modified - time.time()) < 300 for modified in listed.values())
    in_bucket = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="aperture/")["Contents"]}
    assert in_bucket == {f"aperture/{key}" for key in listed}

    assert orphan_blobs_sweep()["removed"] == 0  # younger than the grace period
    time.sleep(1)  # LastModified has whole seconds: let them fall behind "now"
    result = orphan_blobs_sweep(grace_seconds=0)
    assert (result["metadata"], result["frames"], result["removed"]) == (1, 1, 2)
    assert {info.key for info in store.list_blobs(f"{ds}/")} == set(listed) - orphans
    assert imageset_metadata_blob(datastore_id=datastore.id, image_set_id=image_set.id, version=None)
    for frame in ImageFrame.objects.filter(image_set=image_set):
        assert imageset_frame(datastore_id=datastore.id, image_set_id=image_set.id, frame_id=frame.frame_id,
                              accept=None)[0]


class FailingOnSecondWrite(MemoryBlobStore):
    """A store that refuses its second write, as a full disk or a refusing S3 would."""

    def put(self, key: str, data: bytes) -> None:
        if list(self.list_blobs("")):
            from imaging.storage import BlobStoreError

            raise BlobStoreError("disk full")
        super().put(key, data)


def test_a_persist_that_fails_removes_the_documents_it_stored(datastore):
    from imaging.pipeline.persist import persist_instances, stored_instance
    from imaging.pipeline.process import process_bytes
    from imaging.pipeline.results import FileResult
    from imaging.storage import BlobStoreError

    study = generate_uid()
    instances = [stored_instance(process_bytes(ct_bytes(study_uid=study, series_uid=generate_uid()),
                                               FileResult(input_file=f"{n}.dcm")), datastore.id) for n in range(2)]
    store = FailingOnSecondWrite()
    with pytest.raises(BlobStoreError):
        persist_instances(datastore=datastore, instances=instances, blob_store=store)
    assert list(store.list_blobs("")) == []  # the first image set's document went with the rolled-back rows
    assert not ImageSet.objects.exists()
