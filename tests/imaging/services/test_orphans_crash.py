"""A kill -9 during persist leaves metadata and frame blobs that nothing refers to; the server sweeps them when it
starts (issue 11 item 10). Real server processes, the filesystem blob store, SeaweedFS as the import source."""
from __future__ import annotations

import errno
import os
import secrets
import signal
import time
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tests.clients import imaging_client, wait_for
from tests.dicomgen import ct_bytes
from tests.importing import ROLE, ensure_bucket, metadata, read_ndjson, run_import
from tests.servers import ApertureServer, start_celery_worker

pytestmark = [pytest.mark.live, pytest.mark.slow]

PATIENT = "ORPHAN^SWEEP^TEST"


def reader_waiting(fifo: Path) -> int | None:
    """A write end of the FIFO once some process has opened it for reading (until then opening fails)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:
            return None
        raise


def blob_files(root: Path, pattern: str) -> list[Path]:
    return [path for path in root.glob(pattern) if path.is_file()]


def test_blobs_orphaned_by_a_kill_during_persist_are_swept_at_start(seaweed, s3):
    server = ApertureServer(extra_env={**seaweed.env(), "APERTURE_IMPORT_CONCURRENCY": "0"}).start()
    try:
        client = imaging_client(server.url, server.create_key())
        datastore_id = client.create_datastore(datastoreName="orphans")["datastoreId"]
        wait_for(lambda: client.get_datastore(datastoreId=datastore_id)["datastoreProperties"][
            "datastoreStatus"] == "ACTIVE")
        store = server.data_dir / "blobs" / "datastores" / datastore_id
        study, merged_series = generate_uid(), generate_uid()
        dicom = lambda series, n: ct_bytes(study_uid=study, series_uid=series, instance_number=n,  # noqa: E731
                                           patient_name=PATIENT, seed=n)
        first = run_import(client, s3, datastore_id, {"z.dcm": dicom(merged_series, 1)})
        primary_id = first.line_for("z.dcm")["importResponse"]["imageSetId"]

        # The primary's metadata becomes a FIFO: the second job's persist, merging into it, blocks reading it
        # inside its transaction, after it has stored the metadata of the image sets it creates first.
        (primary_metadata,) = blob_files(store, f"imagesets/{primary_id}/metadata-v1-*.json.gz")
        saved = primary_metadata.read_bytes()
        primary_metadata.unlink()
        os.mkfifo(primary_metadata)
        ensure_bucket(s3, "orphans")
        prefix = f"in-{secrets.token_hex(3)}/"
        for n in range(5):
            s3.put_object(Bucket="orphans", Key=f"{prefix}a{n}.dcm", Body=dicom(generate_uid(), n))
        s3.put_object(Bucket="orphans", Key=f"{prefix}zz.dcm", Body=dicom(merged_series, 2))
        job_id = client.start_dicom_import_job(datastoreId=datastore_id, dataAccessRoleArn=ROLE,
                                               inputS3Uri=f"s3://orphans/{prefix}",
                                               outputS3Uri=f"s3://orphans/out-{prefix}")["jobId"]
        writer = wait_for(lambda: reader_waiting(primary_metadata), timeout=120, interval=0.05)
        crashed_metadata = blob_files(store, "imagesets/*/metadata-*.json.gz")
        assert len(crashed_metadata) == 5  # a0..a4's new image sets, not committed
        server.kill()  # SIGKILL in the middle of persist
        os.close(writer)

        primary_metadata.unlink()
        primary_metadata.write_bytes(saved)
        s3.delete_object(Bucket="orphans", Key=f"{prefix}a3.dcm")  # gone before the rerun: its frame is nobody's
        server.launch()  # the job runs again, with the default grace period
        job = wait_for(lambda: (p := client.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)[
            "jobProperties"])["jobStatus"] in ("COMPLETED", "FAILED") and p, timeout=180, interval=0.2)
        assert job["jobStatus"] == "COMPLETED", job
        out = f"out-{prefix}{datastore_id}-DicomImport-{job_id}/"
        success = read_ndjson(s3, "orphans", out + "SUCCESS/success.ndjson")
        assert sorted(line["inputFile"] for line in success) == [f"{prefix}{name}.dcm"
                                                                 for name in ("a0", "a1", "a2", "a4", "zz")]
        assert all(path.exists() for path in crashed_metadata)  # young: the grace period keeps them

        found = server.manage("sweep_orphans", "--dry-run", "--grace-seconds", "0").stdout
        assert "5 metadata and 1 frame blob(s) referenced by nothing; nothing removed (dry run)" in found, found

        server.kill()
        server.env["APERTURE_ORPHAN_GRACE_SECONDS"] = "0"
        server.launch()
        wait_for(lambda: "5 metadata and 1 frame blob(s) referenced by nothing, 6 removed" in server.log(),
                 timeout=60, interval=0.1)
        assert not any(path.exists() for path in crashed_metadata)
        assert len(blob_files(store, "imagesets/*/metadata-*.json.gz")) == 4 + 2  # a0-a2, a4; the primary's v1, v2
        assert len(blob_files(store, "frames/*/*")) == 1 + 4 + 1  # z; a0-a2, a4; zz

        # Everything that is referenced reads back.
        image_set_ids = {line["importResponse"]["imageSetId"] for line in success} | {primary_id}
        assert len(image_set_ids) == 5
        for image_set_id in image_set_ids:
            document = metadata(client, datastore_id, image_set_id)
            for series in document["Study"]["Series"].values():
                for instance in series["Instances"].values():
                    for frame in instance["ImageFrames"]:
                        assert client.get_image_frame(
                            datastoreId=datastore_id, imageSetId=image_set_id,
                            imageFrameInformation={"imageFrameId": frame["ID"]})["imageFrameBlob"].read()
        assert len(metadata(client, datastore_id, primary_id, "1")["Study"]["Series"][merged_series]["Instances"]) == 1
        assert len(metadata(client, datastore_id, primary_id, "2")["Study"]["Series"][merged_series]["Instances"]) == 2
        assert PATIENT not in server.log() and PATIENT.replace("^", " ") not in server.log()
    finally:
        server.stop()


def test_a_celery_worker_sweeps_when_it_starts(seaweed):
    """With APERTURE_TASKS=celery the web process leaves background work to the workers: one that starts queues
    the sweep (beat repeats it daily) and a worker runs it."""
    server = ApertureServer(extra_env={**seaweed.env(), "APERTURE_TASKS": "celery",
                                       "REDIS_URL": "redis://127.0.0.1:6379/8"}).start()
    orphan = server.data_dir / "blobs" / "datastores" / "d" / "imagesets" / ("a" * 32) / "metadata-v1-0.json.gz"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crash")
    then = time.time() - 7 * 3600  # older than the default grace period of 6 hours
    os.utime(orphan, (then, then))
    worker = start_celery_worker(server, "orphans")
    try:
        wait_for(lambda: not orphan.exists(), timeout=60, interval=0.1)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        server.stop()
