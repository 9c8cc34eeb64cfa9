"""Issue 13's proof: the deployment of deploy/ (Procfile, nginx site) as an operator runs it, with real engines.

tests/deployment.py starts PostgreSQL (its own database), Redis (its own db), SeaweedFS, `migrate` once, two web
processes, two prefork Celery workers, beat and nginx in front. Through nginx only, these tests then: import a
400-file CT from S3 and the shared files at once while Chromium scrolls a study; kill one worker mid-import (the job
completes on the other within 60 s, every frame decodes to its source pixels and matches its stored checksum,
nothing is imported twice); kill each web process in turn while the viewer streams (it reconnects through nginx and
goes on); leave a websocket idle for 30 s (it stays open); send 3,000 API requests (PostgreSQL connections stay
bounded); ask /healthz and /readyz.

The deployment is PostgreSQL's, so the module runs in bin/test's PostgreSQL pass (DATABASE_URL names one; CI always
has it) and is skipped in the SQLite pass, which would only repeat it. About 3 minutes.
"""
from __future__ import annotations

import gzip
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import imagecodecs
import numpy as np
import pytest
from botocore.exceptions import BotoCoreError, ClientError
from pydicom.uid import generate_uid
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests import personas
from tests.clients import imaging_client, wait_for
from tests.deployment import deployment_start, http_get
from tests.dicomgen import ct_bytes
from tests.importing import ROLE, ensure_bucket, run_import
from tests.paths import DICOM_DIR
from tests.websessions import Browserless

pytestmark = [
    pytest.mark.live, pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                       reason="the deployment runs on PostgreSQL: bin/test's PostgreSQL pass runs it"),
]

CT_SLICES = 400
CT_SIZE = 256
VIEWER_SLICES = 16
PASSWORD = "a long clinician passphrase"
BUCKET = "incoming"
# Two web processes x a small pool each, two prefork workers (a parent and two children each), beat, and headroom;
# unbounded persistent connections reached PostgreSQL's 100 after about 1,500 requests (issue 13, failure 4).
CONNECTION_BOUND = 40


def ct_pixels(n: int) -> np.ndarray:
    """Slice n of the CT: a body ellipse with an organ that moves, and noise (deterministic, so it can be rebuilt)."""
    rng = np.random.default_rng(n)
    y, x = np.mgrid[0:CT_SIZE, 0:CT_SIZE]
    body = ((x - 128) / 100) ** 2 + ((y - 128) / 75) ** 2 <= 1
    organ = ((x - 100 - n % 40) / 25) ** 2 + ((y - 125) / 20) ** 2 <= 1
    image = np.where(body, 1040, 24) + np.where(organ, 60, 0) + rng.normal(0, 12, (CT_SIZE, CT_SIZE))
    return np.clip(image, 0, 4095).astype(np.uint16)


def viewer_pixels(n: int) -> np.ndarray:
    y, x = np.mgrid[0:128, 0:128]
    return np.where(((x - 64) ** 2 + (y - 64) ** 2) < (10 + n * 3) ** 2, 1084 + n * 10, 124).astype(np.uint16)


def retrying(call, *, attempts: int = 5):
    """A call through nginx while web processes are being killed may meet one dying: ask again."""
    for attempt in range(attempts):
        try:
            return call()
        except (ClientError, BotoCoreError):  # a 502 from nginx, or a connection cut
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")
def deployment():
    instance = deployment_start(web=2, workers=2)
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def mi(deployment):
    return imaging_client(deployment.url, personas.live_key(deployment))


@pytest.fixture(scope="module")
def s3(deployment):
    client = deployment.seaweed.client()
    ensure_bucket(client, BUCKET)
    return client


@pytest.fixture(scope="module")
def datastore_id(mi):
    created = mi.create_datastore(datastoreName="scale")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=created)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    return created


@pytest.fixture(scope="module")
def viewer_study(deployment, mi, s3, datastore_id):
    """A small study the clinician scrolls while the big import runs."""
    study_uid, series_uid = generate_uid(), generate_uid()
    files = {f"{n:03}.dcm": ct_bytes(study_uid=study_uid, series_uid=series_uid, instance_number=n + 1,
                                     patient_name="DOE^SCALE", rows=128, columns=128, pixels=viewer_pixels(n))
             for n in range(VIEWER_SLICES)}
    outcome = run_import(mi, s3, datastore_id, files, bucket=BUCKET, timeout=120)
    assert outcome.job["jobStatus"] == "COMPLETED", (outcome.job, deployment.logs())
    image_set_id = mi.search_image_sets(datastoreId=datastore_id, searchCriteria={"filters": [
        {"values": [{"DICOMStudyInstanceUID": study_uid}], "operator": "EQUAL"}]})["imageSetsMetadataSummaries"][0][
        "imageSetId"]
    personas.live_clinician(deployment, datastore_id, username="clin", password=PASSWORD)
    return {"datastore": datastore_id, "imageSet": image_set_id}


def upload(s3, files: dict, prefix: str) -> None:
    def put(item):
        name, body = item
        s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=body.read_bytes() if hasattr(body, "read_bytes") else body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files.items()))


def job_start(mi, datastore_id: str, prefix: str) -> str:
    return mi.start_dicom_import_job(datastoreId=datastore_id, dataAccessRoleArn=ROLE,
                                     inputS3Uri=f"s3://{BUCKET}/{prefix}",
                                     outputS3Uri=f"s3://{BUCKET}/out-{prefix}")["jobId"]


def job_status(mi, datastore_id: str, job_id: str) -> dict:
    return retrying(lambda: mi.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)["jobProperties"])


def log_in(page, url: str) -> None:
    page.goto(url + "/accounts/login/")
    page.fill("input[name=username]", "clin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def scroll(page, steps: int, *, timeout_ms: int = 20000) -> None:
    """Scroll `steps` slices down (wrapping to the first), each one drawn before the next is asked for."""
    for _ in range(steps):
        current = page.evaluate("window.apertureViewer.lastHeader.frame")
        target = 0 if current >= VIEWER_SLICES - 1 else current + 1
        page.keyboard.press("Home" if target == 0 else "ArrowDown")
        page.wait_for_function(f"window.apertureViewer.lastHeader.frame === {target}", timeout=timeout_ms)


def test_static_files_come_from_nginx_and_big_bodies_get_the_api_envelope(deployment):
    with urllib.request.urlopen(deployment.url + "/static/viewer/main.js", timeout=10) as response:
        assert b"apertureViewer" in response.read()
        # The static location's own header: nginx read the file from collectstatic's folder, no web process did.
        assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert all("/static/viewer/main.js" not in process.log() for process in deployment.web)
    request = urllib.request.Request(deployment.url + "/datastore", data=b"x" * (3 * 1024 * 1024), method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413
    assert refused.value.headers["x-amzn-ErrorType"] == "RequestEntityTooLargeException"
    assert "message" in json.loads(refused.value.read())


def test_health_and_readiness_through_nginx(deployment):
    assert http_get(deployment.url + "/healthz")[0] == 200
    status, body = http_get(deployment.url + "/readyz")
    assert status == 200, body


def test_an_idle_viewer_websocket_stays_open_for_30_seconds(deployment, viewer_study):
    cookie = Browserless(deployment.url).log_in("clin", PASSWORD).cookie_header()
    socket_url = deployment.url.replace("http://", "ws://") + "/ws/render/"
    with connect(socket_url, origin=deployment.url, additional_headers={"Cookie": cookie}, open_timeout=10) as socket:
        socket.send(json.dumps({"type": "open", **viewer_study}))
        assert json.loads(socket.recv(timeout=10))["type"] == "opened"
        idle_until = time.monotonic() + 30
        while (left := idle_until - time.monotonic()) > 0:  # nothing asked: only keepalive pings may arrive
            try:
                message = socket.recv(timeout=left)
            except TimeoutError:
                break
            except ConnectionClosed as closed:
                pytest.fail(f"the idle socket was closed after {30 - left:.0f} s: {closed.rcvd}")
            assert json.loads(message)["type"] == "ping", message
            socket.send(json.dumps({"type": "pong"}))  # as the viewer's socket.js answers
        socket.send(json.dumps({"type": "render", "id": 1, "frame": 3, "window": None, "invert": False,
                                "size": [128, 128], "quality": 90, "format": "png"}))
        reply = socket.recv(timeout=10)
        assert isinstance(reply, bytes), reply
        header = json.loads(reply[4:4 + int.from_bytes(reply[:4], "big")])
        assert header["frame"] == 3


def test_a_400_file_import_survives_a_killed_worker_while_the_viewer_survives_killed_web_processes(
        deployment, mi, s3, datastore_id, viewer_study, browser):
    study_uid, series_uid = generate_uid(), generate_uid()
    ct_files = {f"ct/{n:04}.dcm": ct_bytes(study_uid=study_uid, series_uid=series_uid, instance_number=n + 1,
                                           patient_name="DOE^BIGCT", rows=CT_SIZE, columns=CT_SIZE,
                                           pixels=ct_pixels(n)) for n in range(CT_SLICES)}
    ct_prefix, shared_prefix = f"ct-{secrets.token_hex(3)}/", f"shared-{secrets.token_hex(3)}/"
    upload(s3, ct_files, ct_prefix)
    shared_files = {p.name: p for p in DICOM_DIR.glob("*.dcm")}
    assert len(shared_files) > 50, DICOM_DIR
    upload(s3, shared_files, shared_prefix)

    page = browser.new_context(viewport={"width": 1024, "height": 768}).new_page()
    log_in(page, deployment.url)
    page.goto(f"{deployment.url}/view/{viewer_study['datastore']}/{viewer_study['imageSet']}/")
    page.wait_for_function("window.apertureViewer && window.apertureViewer.rendered > 0", timeout=30000)
    page.evaluate("window.firstSocket = window.apertureViewer.ws")

    ct_job, shared_job = job_start(mi, datastore_id, ct_prefix), job_start(mi, datastore_id, shared_prefix)
    # The viewer scrolls through nginx while both jobs run. The worker that planned the CT job (its log says into how
    # many batches it split it) dies right after: it holds the job's first batch tasks, started or only taken from
    # the queue, and the other worker must finish all of it.
    deadline = time.monotonic() + 60
    while (planner := next((w for w in deployment.workers if f"import job {ct_job}: " in w.log()), None)) is None:
        assert time.monotonic() < deadline, ("the CT job was never planned", deployment.logs())
        scroll(page, 1)
    killed_at = time.monotonic()
    planner.kill()

    # Each web process in turn dies mid-stream and comes back: whichever held the viewer's socket, it reconnects
    # through nginx to the other and scrolling goes on.
    for index in range(len(deployment.web)):
        scroll(page, 2)
        deployment.web[index].kill()
        scroll(page, 4)
        deployment.restart_web(index)
    assert page.evaluate("window.apertureViewer.ws !== window.firstSocket"), "the viewer never reconnected"
    assert page.evaluate("window.apertureViewer.connection") == "open"

    while (ct := job_status(mi, datastore_id, ct_job))["jobStatus"] not in ("COMPLETED", "FAILED"):
        assert time.monotonic() - killed_at < 60, (ct, deployment.logs())
        time.sleep(0.5)
    assert ct["jobStatus"] == "COMPLETED", (ct, deployment.logs())
    shared = wait_for(lambda: (p := job_status(mi, datastore_id, shared_job))["jobStatus"] in ("COMPLETED", "FAILED")
                      and p, timeout=120, interval=0.5)
    assert shared["jobStatus"] == "COMPLETED", shared

    manifest_key = f"out-{ct_prefix}{datastore_id}-DicomImport-{ct_job}/job-output-manifest.json"
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())["jobSummary"]
    assert summary["numberOfScannedFiles"] == CT_SLICES, summary
    assert summary["numberOfImportedFiles"] == CT_SLICES and summary["numberOfGeneratedImageSets"] == 1, summary
    frames_verify(mi, datastore_id, study_uid)


def frames_verify(mi, datastore_id: str, study_uid: str) -> None:
    """One image set holds the study, each instance once, and every frame decodes to its source slice and matches
    the full-resolution checksum stored beside it."""
    found = mi.search_image_sets(datastoreId=datastore_id, searchCriteria={"filters": [
        {"values": [{"DICOMStudyInstanceUID": study_uid}], "operator": "EQUAL"}]})["imageSetsMetadataSummaries"]
    assert len(found) == 1, found  # nothing half-visible, nothing imported twice into a second set
    image_set_id = found[0]["imageSetId"]
    blob = mi.get_image_set_metadata(datastoreId=datastore_id, imageSetId=image_set_id)["imageSetMetadataBlob"]
    document = json.loads(gzip.decompress(blob.read()))
    instances = [i for series in document["Study"]["Series"].values() for i in series["Instances"].values()]
    assert len(instances) == CT_SLICES
    by_number = {int(i["DICOM"]["InstanceNumber"]): i for i in instances}
    assert sorted(by_number) == list(range(1, CT_SLICES + 1))  # each slice once

    def verify(number: int) -> None:
        frame = by_number[number]["ImageFrames"][0]
        body = mi.get_image_frame(datastoreId=datastore_id, imageSetId=image_set_id,
                                  imageFrameInformation={"imageFrameId": frame["ID"]})["imageFrameBlob"].read()
        decoded = imagecodecs.htj2k_decode(body)
        assert np.array_equal(decoded, ct_pixels(number - 1)), number
        full = frame["PixelDataChecksumFromBaseToFullResolution"][-1]
        assert zlib.crc32(np.ascontiguousarray(decoded, "<u2").tobytes()) == full["Checksum"], number

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(verify, range(1, CT_SLICES + 1)))


def test_3000_api_requests_keep_postgresql_connections_bounded(deployment, mi, datastore_id):
    peak = [deployment.postgres_connections()]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(deployment.postgres_connections())
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    key = personas.live_key(deployment)
    clients = [imaging_client(deployment.url, key) for _ in range(8)]  # eight callers at once, one key
    try:
        def call(n: int) -> str:
            client = clients[n % len(clients)]
            if n % 2:
                return client.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"]
            return client.list_datastores()["datastoreSummaries"][0]["datastoreStatus"]

        with ThreadPoolExecutor(len(clients)) as pool:
            statuses = list(pool.map(call, range(3000)))
    finally:
        done.set()
        sampler.join()
    assert statuses.count("ACTIVE") == 3000
    assert max(peak) <= CONNECTION_BOUND, (max(peak), peak[-20:])


def test_a_modality_stores_into_the_procfiles_dicom_listener_and_the_celery_workers_import_it(
        deployment, mi, datastore_id, tmp_path):
    """The `dicom` process of the Procfile, at scale: only a known node may associate (APERTURE_DICOM_ALLOW_ANY is
    false there), what it stores is spooled in the shared data folder and imported by the prefork workers from S3
    blobs, and comes back pixel for pixel."""
    import subprocess

    listener = deployment.start_dicom()
    deployment.manage("datastore_ae", "--datastore", datastore_id, "--ae-title", "SCALE_STORE")
    deployment.manage("dicom_node", "add", "--ae-title", "CT_SCANNER", "--host", "127.0.0.1", "--port", "104",
                      "--store")
    study_uid, series_uid = generate_uid(), generate_uid()
    for n in range(12):
        (tmp_path / f"{n:02}.dcm").write_bytes(ct_bytes(study_uid=study_uid, series_uid=series_uid,
                                                        instance_number=n + 1, rows=128, columns=128,
                                                        pixels=viewer_pixels(n)))
    address = ["127.0.0.1", str(listener.port)]
    stranger = subprocess.run(["echoscu", "-aet", "STRANGER", "-aec", "SCALE_STORE", *address],
                              capture_output=True, text=True, timeout=60)
    assert stranger.returncode != 0  # not a known node
    sent = subprocess.run(["storescu", "-aet", "CT_SCANNER", "-aec", "SCALE_STORE", *address,
                           *sorted(str(p) for p in tmp_path.glob("*.dcm"))],
                          capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, (sent.stderr, deployment.logs())

    def study_image_set():
        found = mi.search_image_sets(datastoreId=datastore_id, searchCriteria={"filters": [
            {"values": [{"DICOMStudyInstanceUID": study_uid}], "operator": "EQUAL"}]})["imageSetsMetadataSummaries"]
        return found[0]["imageSetId"] if found else None

    image_set_id = wait_for(study_image_set, timeout=120)
    assert image_set_id, deployment.logs()
    jobs = mi.list_dicom_import_jobs(datastoreId=datastore_id)["jobSummaries"]
    job = next(j for j in jobs if j.get("jobName", "").startswith("C-STORE"))
    assert wait_for(lambda: job_status(mi, datastore_id, job["jobId"])["jobStatus"] == "COMPLETED", timeout=120)
    document = json.loads(gzip.decompress(mi.get_image_set_metadata(
        datastoreId=datastore_id, imageSetId=image_set_id)["imageSetMetadataBlob"].read()))
    instances = document["Study"]["Series"][series_uid]["Instances"]
    assert len(instances) == 12
    for instance in instances.values():
        number = int(instance["DICOM"]["InstanceNumber"])
        frame_id = instance["ImageFrames"][0]["ID"]
        frame = mi.get_image_frame(datastoreId=datastore_id, imageSetId=image_set_id,
                                   imageFrameInformation={"imageFrameId": frame_id})["imageFrameBlob"].read()
        assert np.array_equal(imagecodecs.htj2k_decode(frame), viewer_pixels(number - 1))
