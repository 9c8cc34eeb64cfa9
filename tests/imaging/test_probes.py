"""`/healthz` and `/readyz` (imaging/probes.py, imaging/services/health.py): each check against the real engine, and
each failure the way an operator meets it (a dependency on a closed port). Answers name checks only: no addresses,
ports or connection strings."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from cryptography.fernet import Fernet

from imaging.probes import HealthProbes
from imaging.services.health import health_forget
from tests.servers import ApertureServer, free_port

REDIS_DB = "redis://127.0.0.1:6379/14"


async def _refuse(scope, receive, send):
    raise AssertionError("the probe reached the application")


def probe(path: str, *, method: str = "GET", app=_refuse) -> tuple[int, dict]:
    response = async_to_sync(HttpCommunicator(HealthProbes(app), method, path).get_response)(timeout=10)
    return response["status"], json.loads(response["body"] or b"{}")


@pytest.fixture(autouse=True)
def _fresh_answers():
    health_forget()
    yield
    health_forget()


def redis_engines(settings, url: str) -> None:
    """Celery on `url` and the Redis channel layer there, as APERTURE_TASKS=celery configures them."""
    settings.APERTURE_TASK_BACKEND = settings.APERTURE_TASK_BACKEND_ALIASES["celery"]
    settings.CELERY_BROKER_URL = url
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [url]}}}


def test_healthz_is_ok_without_touching_the_application():
    assert probe("/healthz") == (200, {"status": "ok"})


def test_other_paths_go_to_the_application():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    assert probe("/healthz/extra", app=app)[0] == 204
    assert probe("/datastore", app=app)[0] == 204


def test_probes_refuse_other_methods():
    assert probe("/readyz", method="POST")[0] == 405


@pytest.mark.django_db(transaction=True)
def test_readyz_embedded_default_database_and_blob_folder_ok(settings, tmp_path):
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path}"
    assert probe("/readyz") == (200, {"status": "ok", "checks": {"database": "ok", "blob_store": "ok"}})


@pytest.mark.django_db(transaction=True)
def test_readyz_blob_folder_that_cannot_exist_fails(settings, tmp_path):
    (tmp_path / "a-file").write_bytes(b"")
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path / 'a-file' / 'blobs'}"
    status, body = probe("/readyz")
    assert status == 503 and body["failed"] == ["blob_store"]


@pytest.mark.django_db(transaction=True)
def test_readyz_redis_broker_and_channel_layer_ok(settings, tmp_path):
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path}"
    redis_engines(settings, REDIS_DB)
    status, body = probe("/readyz")
    assert status == 200
    assert body["checks"] == {"database": "ok", "blob_store": "ok", "broker": "ok", "channel_layer": "ok"}


@pytest.mark.django_db(transaction=True)
def test_readyz_redis_unreachable_is_503_naming_broker_and_channel_layer(settings, tmp_path):
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path}"
    port = free_port()
    redis_engines(settings, f"redis://127.0.0.1:{port}/14")
    status, body = probe("/readyz")
    assert status == 503
    assert body["failed"] == ["broker", "channel_layer"]
    assert body["checks"]["database"] == "ok" and str(port) not in json.dumps(body)


@pytest.mark.django_db(transaction=True)
def test_readyz_s3_blob_store_ok(settings, seaweed, s3):
    s3.create_bucket(Bucket="ready-blobs")
    settings.APERTURE_BLOB_STORE = "s3://ready-blobs/aperture"
    settings.APERTURE_S3_ENDPOINT_URL = seaweed.endpoint
    settings.APERTURE_S3_ACCESS_KEY_ID, settings.APERTURE_S3_SECRET_ACCESS_KEY = seaweed.access_key, seaweed.secret_key
    assert probe("/readyz")[1]["checks"]["blob_store"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_readyz_s3_endpoint_on_a_closed_port_is_503(settings):
    port = free_port()
    settings.APERTURE_BLOB_STORE = "s3://ready-blobs/aperture"
    settings.APERTURE_S3_ENDPOINT_URL = f"http://127.0.0.1:{port}"
    settings.APERTURE_S3_ACCESS_KEY_ID, settings.APERTURE_S3_SECRET_ACCESS_KEY = "AKIDEXAMPLE", "s3cr3t-value"
    status, body = probe("/readyz")
    assert status == 503 and body["failed"] == ["blob_store"] and body["checks"]["database"] == "ok"
    assert str(port) not in json.dumps(body) and "s3cr3t" not in json.dumps(body)


@pytest.mark.django_db(transaction=True)
def test_readyz_is_not_throttled_into_failure(settings, tmp_path):
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path}"
    settings.APERTURE_THROTTLING_ENABLED = True
    assert {probe("/readyz", app=_refuse)[0] for _ in range(50)} == {200}


def _get(url: str, host: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.live
def test_live_probes_answer_any_host_name():
    """A probe from an orchestrator names the process by address, not by a host in DJANGO_ALLOWED_HOSTS."""
    server = ApertureServer(extra_env={"DJANGO_ALLOWED_HOSTS": "archive.example.org"}).start()
    try:
        assert _get(server.url + "/healthz", "10.1.2.3:8000") == (200, {"status": "ok"})
        status, body = _get(server.url + "/readyz", "10.1.2.3:8000")
        assert (status, body["status"]) == (200, "ok")
    finally:
        server.stop()


@pytest.mark.live
def test_live_readyz_is_503_when_postgresql_is_unreachable():
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="aperture-test-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_SETTINGS", "APERTURE_TASKS"))}
    env.update({"APERTURE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1",
                "DATABASE_URL": f"postgres://aperture:pw-not-shown@127.0.0.1:{port}/aperture",
                # A process at scale refuses to start without the shared secrets (config/secret_files.py).
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "APERTURE_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                # Requests that need the database give up on the pool after 1 s, not the default 30 s: the server's
                # start is awaited through such a request, polled with a 2 s timeout (tests/servers.py).
                "APERTURE_DB_POOL_TIMEOUT": "1"})
    server = ApertureServer(port=free_port(), data_dir=data_dir, env=env)
    try:
        server.launch()
        assert _get(server.url + "/healthz", "127.0.0.1") == (200, {"status": "ok"})
        status, body = _get(server.url + "/readyz", "127.0.0.1")
        assert status == 503, server.log()[-2000:]
        assert body["failed"] == ["database"] and body["checks"]["blob_store"] == "ok"
        assert "pw-not-shown" not in server.log() and str(port) not in json.dumps(body)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
