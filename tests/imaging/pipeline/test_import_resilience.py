"""Imports on the engines used at scale and across crashes: a worker killed mid-job, Celery on Redis, and the S3
blob backend, each against a real server process, real Redis and SeaweedFS."""
from __future__ import annotations

import secrets
import signal
import time

import pytest
from pydicom.uid import generate_uid

from imaging.storage.s3 import S3BlobStore, s3_client
from tests.clients import imaging_client, wait_for
from tests.dicomgen import ct_bytes
from tests.importing import ROLE, ensure_bucket, metadata, read_ndjson, run_import
from tests.servers import ApertureServer, start_celery_worker

pytestmark = [pytest.mark.live, pytest.mark.slow]


def start_server(seaweed, **env) -> tuple[ApertureServer, object]:
    server = ApertureServer(extra_env={**seaweed.env(), **env}).start()
    client = imaging_client(server.url, server.create_key())
    return server, client


def new_datastore(client) -> str:
    datastore_id = client.create_datastore(datastoreName="resilience")["datastoreId"]
    wait_for(lambda: client.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    return datastore_id


def test_killed_worker_resumes_the_job_after_restart(seaweed, s3):
    server, client = start_server(seaweed, APERTURE_IMPORT_CONCURRENCY="1")
    try:
        datastore_id = new_datastore(client)
        study, series = generate_uid(), generate_uid()
        ensure_bucket(s3, "crash")
        prefix = f"job-{secrets.token_hex(3)}/"
        count = 300
        for n in range(count):
            body = ct_bytes(study_uid=study, series_uid=series, instance_number=n, rows=256, columns=256, seed=n)
            s3.put_object(Bucket="crash", Key=f"{prefix}{n:04}.dcm", Body=body)
        job_id = client.start_dicom_import_job(
            datastoreId=datastore_id, dataAccessRoleArn=ROLE, inputS3Uri=f"s3://crash/{prefix}",
            outputS3Uri=f"s3://crash/out-{prefix}",
        )["jobId"]
        wait_for(lambda: client.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)["jobProperties"][
            "jobStatus"] == "IN_PROGRESS", interval=0.02)
        time.sleep(0.5)
        server.kill()  # SIGKILL: no cleanup of any kind
        server.launch()
        job = wait_for(lambda: (p := client.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)[
            "jobProperties"])["jobStatus"] in ("COMPLETED", "FAILED") and p, timeout=180, interval=0.2)
        assert job["jobStatus"] == "COMPLETED", job
        out = f"out-{prefix}{datastore_id}-DicomImport-{job_id}/"
        success = read_ndjson(s3, "crash", out + "SUCCESS/success.ndjson")
        assert len(success) == count
        image_set_ids = {line["importResponse"]["imageSetId"] for line in success}
        assert len(image_set_ids) == 1
        image_set_id = image_set_ids.pop()
        image_set = client.get_image_set(datastoreId=datastore_id, imageSetId=image_set_id)
        assert image_set["versionId"] == "1"  # persisted exactly once
        assert len(metadata(client, datastore_id, image_set_id)["Study"]["Series"][series]["Instances"]) == count
        assert "re-queued 1 interrupted import job" in server.log()  # it really was cut off and resumed
        # The second run wrote the first run's frames again under the same ids: no blob was left behind.
        frames_dir = server.data_dir / "blobs" / "datastores" / datastore_id / "frames"
        blobs = [p for p in frames_dir.rglob("*") if p.is_file()]
        assert len(blobs) == count
    finally:
        server.stop()


def test_celery_workers_on_redis_run_imports(seaweed, s3):
    redis_url = "redis://127.0.0.1:6379/7"
    server, client = start_server(seaweed, APERTURE_TASKS="celery", REDIS_URL=redis_url)
    worker = start_celery_worker(server, "test")
    try:
        datastore_id = new_datastore(client)  # CREATING -> ACTIVE is itself a Celery task here
        outcome = run_import(client, s3, datastore_id, {
            f"{n}.dcm": ct_bytes(study_uid="1.2.3", series_uid="1.2.3.4", instance_number=n, seed=n) for n in range(3)
        })
        assert outcome.job["jobStatus"] == "COMPLETED"
        assert outcome.summary["numberOfImportedFiles"] == 3
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        server.stop()


def test_s3_blob_backend_stores_frames_and_metadata(seaweed, s3):
    bucket = f"blobs-{secrets.token_hex(3)}"
    ensure_bucket(s3, bucket)
    server, client = start_server(seaweed, APERTURE_BLOB_STORE=f"s3://{bucket}/aperture")
    try:
        datastore_id = new_datastore(client)
        outcome = run_import(client, s3, datastore_id, {
            "a.dcm": ct_bytes(study_uid=generate_uid(), series_uid=generate_uid())
        })
        image_set_id = outcome.line_for("a.dcm")["importResponse"]["imageSetId"]
        document = metadata(client, datastore_id, image_set_id)
        instance = next(iter(next(iter(document["Study"]["Series"].values()))["Instances"].values()))
        frame_id = instance["ImageFrames"][0]["ID"]
        frame = client.get_image_frame(datastoreId=datastore_id, imageSetId=image_set_id,
                                       imageFrameInformation={"imageFrameId": frame_id})["imageFrameBlob"].read()
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="aperture/")["Contents"]]
        assert any(key.endswith(frame_id) for key in keys)
        assert any("metadata-v1" in key for key in keys)
        frame_key = next(key for key in keys if key.endswith(frame_id))
        assert s3.get_object(Bucket=bucket, Key=frame_key)["Body"].read() == frame
    finally:
        server.stop()


def test_s3_blob_store_interface(seaweed, s3):
    bucket = f"iface-{secrets.token_hex(3)}"
    ensure_bucket(s3, bucket)
    store = S3BlobStore(client=s3_client(endpoint_url=seaweed.endpoint, access_key_id=seaweed.access_key,
                                         secret_access_key=seaweed.secret_key, region="us-east-1"),
                        bucket=bucket, prefix="p")
    store.put("a/1", b"one")
    store.put("a/2", b"two")
    store.put("b/1", b"three")
    assert store.get("a/1") == b"one" and store.get("missing") is None
    store.delete("a/1")
    assert store.get("a/1") is None
    store.delete_prefix("a/")
    assert store.get("a/2") is None and store.get("b/1") == b"three"
