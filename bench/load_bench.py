"""Bounded loopback load on the deployment of deploy/ (tests/deployment.py: nginx, web processes, prefork Celery
workers, PostgreSQL, Redis, SeaweedFS), printed as two tables.

    .venv/bin/python bench/load_bench.py [--slices 400] [--size 512] [--viewers 1,10,40] [--seconds 15]

1. One import job of a generated CT (`--slices` files of `--size`² from S3) with 1 and then 2 Celery workers
   (the Procfile's prefork worker with `--worker-concurrency` children each, default 1: one worker is one core's
   worth, so on a small machine "2 workers" is twice the CPU, as two worker machines would be): seconds, files/s
   and the speed-up of 2 over 1 (issue 13's target: at least 1.7).
2. Scrolling viewers during imports: N websocket clients through nginx, each asking for the next slice as soon as
   the last one arrived (512² JPEG renders of a 64-slice study), for `--seconds`, while the CT is imported again
   and again (a fresh data store each time, so the workers are busy throughout);
   with 1 and then 2 web processes behind nginx. Frames/s over all clients, p50 and p99 render latency (request
   sent to image received).

Run it on a quiet machine: every process shares its cores. A small check: --slices 20 --size 128 --viewers 1,2
--seconds 3.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.clients import imaging_client, wait_for  # noqa: E402
from tests.deployment import Deployment, deployment_start  # noqa: E402
from tests.importing import ROLE, ensure_bucket  # noqa: E402
from tests.websessions import Browserless  # noqa: E402

BUCKET = "bench"
VIEWER_SLICES = 64
USERNAME, PASSWORD = "bench", "a long bench passphrase"


def phantom(n: int, size: int):
    import numpy as np

    rng = np.random.default_rng(n)
    y, x = np.mgrid[0:size, 0:size]
    body = ((x - size / 2) / (size * 0.4)) ** 2 + ((y - size / 2) / (size * 0.3)) ** 2 <= 1
    image = np.where(body, 1040, 24) + rng.normal(0, 12, (size, size))
    return np.clip(image, 0, 4095).astype(np.uint16)


def series_upload(s3, *, slices: int, size: int) -> str:
    """A CT series as P10 files under a fresh prefix; returns the prefix."""
    from pydicom.uid import generate_uid

    from tests.dicomgen import ct_bytes

    study, series, prefix = generate_uid(), generate_uid(), f"ct-{secrets.token_hex(4)}/"

    def put(n: int) -> None:
        body = ct_bytes(study_uid=study, series_uid=series, instance_number=n + 1, patient_name="BENCH^LOAD",
                        rows=size, columns=size, pixels=phantom(n, size))
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}{n:04}.dcm", Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(slices)))
    return prefix


def datastore_new(mi) -> str:
    created = mi.create_datastore(datastoreName=f"bench-{secrets.token_hex(3)}")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=created)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    return created


def import_start(mi, datastore_id: str, prefix: str) -> str:
    return mi.start_dicom_import_job(datastoreId=datastore_id, dataAccessRoleArn=ROLE,
                                     inputS3Uri=f"s3://{BUCKET}/{prefix}",
                                     outputS3Uri=f"s3://{BUCKET}/out-{prefix}")["jobId"]


def import_wait(mi, datastore_id: str, job_id: str, timeout: float = 1800) -> dict:
    job = wait_for(lambda: (p := mi.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)["jobProperties"])[
        "jobStatus"] in ("COMPLETED", "FAILED") and p, timeout=timeout, interval=0.1)
    if job["jobStatus"] != "COMPLETED":
        raise RuntimeError(f"import failed: {job.get('message')}")
    return job


def import_seconds(mi, prefix: str) -> float:
    datastore_id = datastore_new(mi)
    started = time.perf_counter()
    import_wait(mi, datastore_id, import_start(mi, datastore_id, prefix))
    return time.perf_counter() - started


def imports_until(mi, prefix: str, stop: threading.Event) -> int:
    """Import the CT again and again, each time into a fresh data store, until `stop` is set; returns how many
    imports completed. Keeps the workers (and the database) busy for the whole of a viewer measurement."""
    completed = 0
    while not stop.is_set():
        store = datastore_new(mi)
        import_wait(mi, store, import_start(mi, store, prefix))
        completed += 1
    return completed


def viewer(url: str, cookie: str, ids: dict, *, size: int, until: float, latencies: list[float],
           lock: threading.Lock) -> None:
    """One scrolling viewer: the next slice as soon as the last one arrived, until `until`."""
    from websockets.sync.client import connect

    own = []
    with connect(url.replace("http://", "ws://") + "/ws/render/", origin=url, additional_headers={"Cookie": cookie},
                 open_timeout=30, max_size=2**24) as socket:
        socket.send(json.dumps({"type": "open", **ids}))
        count = json.loads(socket.recv(timeout=30))["count"]
        frame, request_id = secrets.randbelow(count), 0
        while time.monotonic() < until:
            request_id += 1
            frame = (frame + 1) % count
            started = time.perf_counter()
            socket.send(json.dumps({"type": "render", "id": request_id, "frame": frame, "window": None,
                                    "invert": False, "size": [size, size], "quality": 90, "format": "jpeg"}))
            while not isinstance(socket.recv(timeout=60), bytes):
                pass  # "dropped" and other notices: the image is still to come
            own.append(time.perf_counter() - started)
    with lock:
        latencies.extend(own)


def viewers_run(deployment: Deployment, *, cookie: str, ids: dict, clients: int, seconds: float,
                size: int) -> tuple[float, float, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    until = time.monotonic() + seconds
    started = time.perf_counter()
    threads = [threading.Thread(target=viewer, args=(deployment.url, cookie, ids),
                                kwargs={"size": size, "until": until, "latencies": latencies, "lock": lock})
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--viewers", default="1,10,40")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--worker-concurrency", type=int, default=1, help="prefork children per worker")
    parser.add_argument("--worker-args", default="", help="added to the Procfile's worker command, e.g. --pool=solo")
    args = parser.parse_args()
    viewer_counts = [int(v) for v in args.viewers.split(",")]

    deployment = deployment_start(web=2, workers=1, worker_concurrency=args.worker_concurrency,
                                  worker_args=args.worker_args)
    try:
        key = json.loads(deployment.manage("accesskey", "create", "--json").stdout.strip().splitlines()[-1])
        mi = imaging_client(deployment.url, key)
        s3 = deployment.seaweed.client()
        ensure_bucket(s3, BUCKET)
        ct_prefix = series_upload(s3, slices=args.slices, size=args.size)
        import_seconds(mi, series_upload(s3, slices=4, size=64))  # warm: the worker's first job pays its start-up

        import_rows = [(1, import_seconds(mi, ct_prefix))]
        deployment.start_worker(concurrency=args.worker_concurrency, extra_args=args.worker_args)
        import_rows.append((2, import_seconds(mi, ct_prefix)))

        viewer_store = datastore_new(mi)
        import_wait(mi, viewer_store, import_start(mi, viewer_store, series_upload(s3, slices=VIEWER_SLICES,
                                                                                  size=args.size)))
        image_set_id = mi.search_image_sets(datastoreId=viewer_store, searchCriteria={})[
            "imageSetsMetadataSummaries"][0]["imageSetId"]
        deployment.manage("shell", "-c", "from django.contrib.auth import get_user_model; get_user_model().objects."
                          f"create_superuser({USERNAME!r}, None, {PASSWORD!r})")
        cookie = Browserless(deployment.url).log_in(USERNAME, PASSWORD).cookie_header()
        ids = {"datastore": viewer_store, "imageSet": image_set_id}

        viewer_rows = []
        second_web = deployment.web.pop()  # 1 web process first: nginx is pointed at the first one only
        second_web.stop()
        deployment.nginx_reload()
        for web_processes in (1, 2):
            if web_processes == 2:
                deployment.start_web()
                deployment.nginx_reload()
            # Warm: every web process decodes the study once into its cache before anything is measured.
            viewers_run(deployment, cookie=cookie, ids=ids, clients=2 * web_processes, seconds=3, size=args.size)
            for clients in viewer_counts:
                stop = threading.Event()
                with ThreadPoolExecutor(1) as background:
                    importing = background.submit(imports_until, mi, ct_prefix, stop)  # imports while they scroll
                    rate, p50, p99 = viewers_run(deployment, cookie=cookie, ids=ids, clients=clients,
                                                 seconds=args.seconds, size=args.size)
                    stop.set()
                    importing.result()
                viewer_rows.append((web_processes, clients, rate, p50, p99))
    finally:
        deployment.stop()

    print(f"loopback deployment: nginx, PostgreSQL, Redis, SeaweedFS; {os.cpu_count()} cores shared by everything")
    print(f"\none import job, CT {args.slices} files of {args.size}x{args.size} from S3, "
          f"{args.worker_concurrency} prefork child(ren) per worker")
    print(f"{'workers':>8}{'seconds':>10}{'files/s':>9}{'speed-up':>10}")
    for workers, seconds in import_rows:
        print(f"{workers:>8}{seconds:>10.2f}{args.slices / seconds:>9.1f}{import_rows[0][1] / seconds:>10.2f}")
    print(f"\nscrolling viewers during imports ({args.size}x{args.size} JPEG renders, {args.seconds:.0f} s each)")
    print(f"{'web':>4}{'viewers':>9}{'frames/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for web_processes, clients, rate, p50, p99 in viewer_rows:
        print(f"{web_processes:>4}{clients:>9}{rate:>10.1f}{p50:>9.1f}{p99:>9.1f}")


if __name__ == "__main__":
    main()
