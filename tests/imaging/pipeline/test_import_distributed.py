"""Imports distributed by Celery, end to end: real Redis (db 11), SeaweedFS, a server process and Celery workers as
the documented `celery -A config.celery worker` runs them (prefork), plus beat for the recovery task.

A job is split into batches that any worker takes; its manifests are those of the embedded thread backend; two
workers share one job; and when a worker (whole, or one prefork child) is SIGKILLed mid-job the job completes on
the other within 60 s, every frame decodes to its checksum, nothing is imported twice and no frame blob is left
unreferenced."""
from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import zlib
from contextlib import contextmanager
from typing import Iterator

import pytest
import redis
from pydicom.uid import generate_uid

from imaging.codecs import htj2k
from tests.clients import imaging_client, wait_for
from tests.dicomgen import ct_bytes
from tests.importing import ROLE, ensure_bucket, metadata, read_ndjson
from tests.servers import ApertureServer, prefork_children, start_celery_beat, start_celery_worker

pytestmark = [pytest.mark.live, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/11"
BUCKET = "distributed"


@contextmanager
def celery_deployment(seaweed, workers: int, *, beat: bool = False, app: str = "config.celery",
                      **env: str) -> Iterator[tuple]:
    """A server publishing to Redis db 11, `workers` prefork workers of two children each, and beat if asked."""
    redis.Redis.from_url(REDIS_URL).flushdb()  # our own db number: no queued task of an earlier run is left
    server = ApertureServer(extra_env={**seaweed.env(), "APERTURE_TASKS": "celery", "REDIS_URL": REDIS_URL,
                                       "APERTURE_IMPORT_BATCH_FILES": "4", **env}).start()
    processes: list[subprocess.Popen] = []
    try:
        names = [f"w{n}" for n in range(workers)]
        for name in names:
            processes.append(start_celery_worker(server, name, pool="prefork", concurrency=2, app=app))
        for name in names:
            wait_for(lambda: "ready." in (server.data_dir / f"celery-{name}.log").read_text(errors="replace"),
                     timeout=60, interval=0.2)
        if beat:
            processes.append(start_celery_beat(server))
        yield server, imaging_client(server.url, server.create_key()), processes[:workers]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
        server.stop()


def rows(server: ApertureServer, sql: str) -> list[tuple]:
    """Read the server's own database (SQLite in its data dir, or its PostgreSQL database)."""
    if server.database is not None:
        import psycopg

        with psycopg.connect(server.database.url) as connection:
            return connection.execute(sql).fetchall()
    with sqlite3.connect(server.data_dir / "aperture.sqlite3", timeout=30) as connection:
        return connection.execute(sql).fetchall()


def new_datastore(client) -> str:
    datastore_id = client.create_datastore(datastoreName="distributed")["datastoreId"]
    wait_for(lambda: client.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"]
             == "ACTIVE", timeout=60)
    return datastore_id


def upload_series(s3, count: int, size: int = 64) -> tuple[str, str]:
    """`count` CT slices of one series (and one file that is not DICOM) under a fresh prefix; (prefix, series)."""
    ensure_bucket(s3, BUCKET)
    prefix = f"in-{secrets.token_hex(4)}/"
    study, series = generate_uid(), generate_uid()
    for n in range(count):
        body = ct_bytes(study_uid=study, series_uid=series, instance_number=n, rows=size, columns=size, seed=n)
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}{n:04}.dcm", Body=body)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}junk.bin", Body=b"not dicom" * 50)
    return prefix, series


def start_job(client, datastore_id: str, prefix: str) -> str:
    return client.start_dicom_import_job(datastoreId=datastore_id, dataAccessRoleArn=ROLE,
                                         inputS3Uri=f"s3://{BUCKET}/{prefix}",
                                         outputS3Uri=f"s3://{BUCKET}/out-{prefix}")["jobId"]


def job_ended(client, datastore_id: str, job_id: str, timeout: float) -> dict:
    return wait_for(lambda: (p := client.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)[
        "jobProperties"])["jobStatus"] in ("COMPLETED", "FAILED") and p, timeout=timeout, interval=0.2)


def s3_manifests(s3, datastore_id: str, job_id: str, prefix: str) -> dict:
    """The job's manifests with its own ids replaced, to compare jobs over the same files."""
    out = f"out-{prefix}{datastore_id}-DicomImport-{job_id}/"
    texts = {name: s3.get_object(Bucket=BUCKET, Key=out + name)["Body"].read().decode()
             for name in ("SUCCESS/success.ndjson", "WARNING/warning.ndjson", "FAILURE/failure.ndjson",
                          "job-output-manifest.json")}
    normalized = {}
    for name, text in texts.items():
        for value in (job_id, datastore_id):
            text = text.replace(value, "ID")
        if name.endswith("ndjson"):
            lines = [json.loads(line) for line in text.splitlines()]
            for line in lines:
                line.get("importResponse", {}).pop("imageSetId", None)
            normalized[name] = sorted(json.dumps(line, sort_keys=True) for line in lines)
        else:
            summary = json.loads(text)["jobSummary"]
            summary["imageSetsSummary"] = [{k: v for k, v in item.items() if k != "imageSetId"}
                                           for item in summary["imageSetsSummary"]]
            normalized[name] = summary
    return normalized


def assert_imported_once(server: ApertureServer, client, s3, datastore_id: str, job_id: str, prefix: str,
                         series: str, count: int) -> None:
    """One image set, version 1, with every instance; every frame decodes to its checksum; no orphan frame."""
    out = f"out-{prefix}{datastore_id}-DicomImport-{job_id}/"
    success = read_ndjson(s3, BUCKET, out + "SUCCESS/success.ndjson")
    assert len(success) == count
    image_set_ids = {line["importResponse"]["imageSetId"] for line in success}
    assert len(image_set_ids) == 1  # image sets == instance groups: nothing imported twice
    image_set_id = image_set_ids.pop()
    assert client.get_image_set(datastoreId=datastore_id, imageSetId=image_set_id)["versionId"] == "1"
    instances = metadata(client, datastore_id, image_set_id)["Study"]["Series"][series]["Instances"]
    assert len(instances) == count
    for instance in instances.values():
        for frame in instance["ImageFrames"]:
            codestream = client.get_image_frame(datastoreId=datastore_id, imageSetId=image_set_id,
                                                imageFrameInformation={"imageFrameId": frame["ID"]})[
                "imageFrameBlob"].read()
            pixels = htj2k.decode(codestream)
            expected = frame["PixelDataChecksumFromBaseToFullResolution"][-1]["Checksum"]
            assert zlib.crc32(pixels.astype("<u2").tobytes()) == expected
    assert rows(server, "SELECT COUNT(*) FROM imaging_imageset")[0][0] == 1
    assert rows(server, "SELECT COUNT(*) FROM imaging_imageframe")[0][0] == count
    orphans = server.manage("sweep_orphans", "--dry-run", "--grace-seconds", "0").stdout
    assert "0 frame blob(s) referenced by nothing" in orphans, orphans


def test_a_prefork_worker_imports_with_the_manifests_of_the_thread_backend(seaweed, s3):
    prefix, _ = upload_series(s3, 10)
    thread_server = ApertureServer(extra_env=seaweed.env()).start()
    try:
        thread_client = imaging_client(thread_server.url, thread_server.create_key())
        thread_store = new_datastore(thread_client)
        thread_job = start_job(thread_client, thread_store, prefix)
        assert job_ended(thread_client, thread_store, thread_job, 120)["jobStatus"] == "COMPLETED"
        expected = s3_manifests(s3, thread_store, thread_job, prefix)
    finally:
        thread_server.stop()
    with celery_deployment(seaweed, 1) as (server, client, _):
        datastore_id = new_datastore(client)
        job_id = start_job(client, datastore_id, prefix)
        assert job_ended(client, datastore_id, job_id, 120)["jobStatus"] == "COMPLETED"
        assert s3_manifests(s3, datastore_id, job_id, prefix) == expected
        batches = rows(server, f"SELECT status, worker FROM imaging_importbatch WHERE job_id = '{job_id}'")
        assert len(batches) == 3 and {status for status, _ in batches} == {"DONE"}  # 11 files, 4 per batch
        # A local folder job, started as the admin starts one, on the same workers.
        folder = server.data_dir / "local-input"
        folder.mkdir()
        for n in range(5):
            (folder / f"{n}.dcm").write_bytes(ct_bytes(study_uid=generate_uid(), series_uid=generate_uid(), seed=n))
        started = server.manage("shell", "-c", "from imaging.services.imports import import_job_start_local as s;"
                                f"print(s(datastore_id='{datastore_id}', paths=['{folder}']).id)")
        local_job = started.stdout.strip().splitlines()[-1]
        job = job_ended(client, datastore_id, local_job, 120)
        assert job["jobStatus"] == "COMPLETED", job
        summary = json.loads((server.data_dir / "imports" / f"{datastore_id}-DicomImport-{local_job}" /
                              "job-output-manifest.json").read_text())["jobSummary"]
        assert summary["numberOfImportedFiles"] == 5 and summary["numberOfGeneratedImageSets"] == 5
        assert "daemonic processes" not in (server.data_dir / "celery-w0.log").read_text()


def test_one_job_is_spread_over_two_workers(seaweed, s3):
    prefix, _ = upload_series(s3, 40)
    with celery_deployment(seaweed, 2) as (server, client, _):
        datastore_id = new_datastore(client)
        job_id = start_job(client, datastore_id, prefix)
        assert job_ended(client, datastore_id, job_id, 120)["jobStatus"] == "COMPLETED"
        workers = rows(server, f"SELECT worker FROM imaging_importbatch WHERE job_id = '{job_id}'")
        nodes = {worker.rsplit(":", 1)[0] for (worker,) in workers}
        assert len(nodes) >= 2, nodes


@pytest.mark.parametrize("victim", ["worker", "child"])
def test_a_job_whose_worker_is_killed_finishes_on_the_other_within_60s(seaweed, s3, victim):
    count = 120
    prefix, series = upload_series(s3, count, size=256)
    with celery_deployment(seaweed, 2, beat=True, APERTURE_RECOVERY_EVERY_SECONDS="2") as (server, client, workers):
        datastore_id = new_datastore(client)
        job_id = start_job(client, datastore_id, prefix)
        # Wait until a batch has recorded a file and is still running: its worker is mid-batch.
        running = wait_for(lambda: rows(server, "SELECT worker FROM imaging_importbatch WHERE status = 'RUNNING'"
                                                " AND results != '[]' AND job_id = '" + job_id + "'"),
                           timeout=120, interval=0.05)
        _, pid = running[0][0].rsplit(":", 1)
        if victim == "worker":
            worker = next(w for w in workers if int(pid) in prefork_children(w))
            worker.send_signal(signal.SIGKILL)
        else:
            os.kill(int(pid), signal.SIGKILL)  # one prefork child: its worker lives on and starts another
        job = job_ended(client, datastore_id, job_id, 60)
        assert job["jobStatus"] == "COMPLETED", job
        taken_over = rows(server, f"SELECT attempts FROM imaging_importbatch WHERE job_id = '{job_id}'"
                                  " AND attempts > 1")
        assert taken_over  # the killed worker's batch really was run again elsewhere
        if victim == "child":
            # Celery handed the lost child's task straight back; its batch's heartbeat was still fresh, so the
            # copy was retried later instead of being acknowledged and dropped.
            logs = "".join((server.data_dir / f"celery-w{n}.log").read_text(errors="replace") for n in range(2))
            assert "WorkerLostError" in logs and "retry: Retry in" in logs
        assert_imported_once(server, client, s3, datastore_id, job_id, prefix, series, count)


def test_a_file_past_its_time_limit_fails_alone_in_a_prefork_worker(seaweed, s3):
    """Celery's prefork children run tasks in their main thread, so SIGALRM interrupts a file stuck in Python at
    its limit; a child stuck in native code is ended by the watchdog, and its redelivered batch fails that file
    once it has ended a worker twice. The other files are imported."""
    ensure_bucket(s3, BUCKET)
    prefix = f"hang-{secrets.token_hex(4)}/"
    study, series = generate_uid(), generate_uid()
    names = [f"{n:04}.dcm" for n in range(6)] + ["0006-python-hang.dcm", "0007-native-hang.dcm"]
    for n, name in enumerate(names):
        s3.put_object(Bucket=BUCKET, Key=prefix + name,
                      Body=ct_bytes(study_uid=study, series_uid=series, instance_number=n, seed=n))
    with celery_deployment(seaweed, 1, app="tests.celery_hang_app", APERTURE_IMPORT_FILE_TIMEOUT_SECONDS="1",
                           APERTURE_IMPORT_STALE_SECONDS="5") as (server, client, _):
        datastore_id = new_datastore(client)
        job_id = start_job(client, datastore_id, prefix)
        assert job_ended(client, datastore_id, job_id, 120)["jobStatus"] == "COMPLETED"
        out = f"out-{prefix}{datastore_id}-DicomImport-{job_id}/"
        failures = {line["inputFile"].rsplit("/", 1)[-1]: line["exception"]
                    for line in read_ndjson(s3, BUCKET, out + "FAILURE/failure.ndjson")}
        assert failures["0006-python-hang.dcm"]["exceptionType"] == "ValidationException"
        assert "APERTURE_IMPORT_FILE_TIMEOUT_SECONDS (1 s)" in failures["0006-python-hang.dcm"]["message"]
        assert failures["0007-native-hang.dcm"]["exceptionType"] == "InternalServerException"
        assert failures["0007-native-hang.dcm"]["message"].startswith("The worker processing the file crashed")
        assert len(read_ndjson(s3, BUCKET, out + "SUCCESS/success.ndjson")) == 6


def test_without_beat_the_broker_gives_a_killed_workers_batch_to_the_other(seaweed, s3):
    """acks_late and the Redis visibility timeout alone: the SIGKILLed worker's task was never acknowledged, so
    Redis hands it to the surviving worker once the timeout has passed; its batch's heartbeat is stale by then."""
    count = 60
    prefix, series = upload_series(s3, count, size=256)
    with celery_deployment(seaweed, 2, APERTURE_CELERY_VISIBILITY_TIMEOUT_SECONDS="10",
                           APERTURE_IMPORT_STALE_SECONDS="5") as (server, client, workers):
        datastore_id = new_datastore(client)
        job_id = start_job(client, datastore_id, prefix)
        running = wait_for(lambda: rows(server, "SELECT worker FROM imaging_importbatch WHERE status = 'RUNNING'"
                                                " AND results != '[]' AND job_id = '" + job_id + "'"),
                           timeout=120, interval=0.05)
        pid = int(running[0][0].rsplit(":", 1)[1])
        next(w for w in workers if pid in prefork_children(w)).send_signal(signal.SIGKILL)
        job = job_ended(client, datastore_id, job_id, 60)
        assert job["jobStatus"] == "COMPLETED", job
        assert rows(server, f"SELECT COUNT(*) FROM imaging_importbatch WHERE job_id = '{job_id}' AND attempts > 1")[
            0][0] >= 1
        assert_imported_once(server, client, s3, datastore_id, job_id, prefix, series, count)
