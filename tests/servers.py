"""Real services for tests: an Aperture server in a subprocess (ASGI via `manage.py serve`), with its own
data directory and its own database (SQLite, or a fresh PostgreSQL database when DATABASE_URL names one)."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from tests.paths import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # the server answered
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


class PostgresDatabase:
    """A throw-away database on the local PostgreSQL, so runs never see each other's rows."""

    def __init__(self, base_url: str) -> None:
        self.base = urlparse(base_url)
        self.name = f"aperture_t_{uuid.uuid4().hex[:12]}"
        self.url = urlunparse(self.base._replace(path=f"/{self.name}"))

    def _admin(self):
        import psycopg

        return psycopg.connect(
            host=self.base.hostname, port=self.base.port or 5432, user=self.base.username or None,
            password=self.base.password or None, dbname="postgres", autocommit=True,
        )

    def create(self) -> None:
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class ApertureServer:
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    data_dir: Path | None = None
    process: subprocess.Popen | None = None
    database: PostgresDatabase | None = None
    env: dict[str, str] = field(default_factory=dict)
    owns_data: bool = True  # False for the extra processes of `start_web_processes`: the first one cleans up

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, check=check
        )

    def create_key(self, policy: str = "AWSHealthImagingFullAccess", user: str | None = None) -> dict[str, str]:
        args = ["accesskey", "create", "--json", "--policy", policy]
        if user:
            args += ["--user", user]
        return json.loads(self.manage(*args).stdout.strip().splitlines()[-1])

    def start(self) -> "ApertureServer":
        self.data_dir = Path(tempfile.mkdtemp(prefix="aperture-test-"))
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SETTINGS")}
        env.update({"APERTURE_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"})
        env.pop("APERTURE_TASKS", None)
        # Many servers run at once: none listens for DICOM (port 11112) unless the test asks (extra_env).
        env["APERTURE_DICOM_LISTEN"] = "false"
        base_db = os.environ.get("DATABASE_URL", "")
        if base_db.startswith("postgres"):
            self.database = PostgresDatabase(base_db)
            self.database.create()
            env["DATABASE_URL"] = self.database.url
        env.update(self.extra_env)
        self.env = env
        self.manage("migrate", "--noinput", "-v0")
        self.launch()
        return self

    def launch(self) -> None:
        log = open(self.data_dir / "server.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", f"127.0.0.1:{self.port}"],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_http(self.url + "/datastore")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.owns_data:
            return
        if self.database:
            self.database.drop()
        if self.data_dir and not os.environ.get("APERTURE_KEEP_TEST_DATA"):
            shutil.rmtree(self.data_dir, ignore_errors=True)  # set APERTURE_KEEP_TEST_DATA=1 to look inside

    def log(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace") if self.data_dir else ""


def start_web_processes(count: int, extra_env: dict[str, str] | None = None) -> list[ApertureServer]:
    """`count` web processes on ports of their own, sharing one data dir, database and environment, as an operator
    runs them behind a proxy. The first owns the data: stop the others first, then it."""
    first = ApertureServer(extra_env=dict(extra_env or {})).start()
    servers = [first]
    for _ in range(count - 1):
        other = ApertureServer(extra_env=first.extra_env, port=free_port(), data_dir=first.data_dir, env=first.env,
                               owns_data=False)
        other.launch()
        servers.append(other)
    return servers


def start_celery_worker(server: "ApertureServer", name: str, *, pool: str = "solo", concurrency: int = 1,
                        app: str = "config.celery") -> subprocess.Popen:
    """A Celery worker on the server's environment (its broker, database and blob store), `--pool=solo` or, as
    the documented `celery -A config.celery worker` runs, prefork with `concurrency` children; kill it when done.
    Its output goes to celery-<name>.log in the server's data dir."""
    log = open(server.data_dir / f"celery-{name}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", f"--pool={pool}",
         f"--concurrency={concurrency}", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l",
         "info", "-n", f"{name}-{secrets.token_hex(3)}@%h"],
        cwd=REPO_ROOT, env=server.env, stdout=log, stderr=subprocess.STDOUT,
    )


def start_celery_beat(server: "ApertureServer") -> subprocess.Popen:
    """Celery beat on the server's environment (it queues the periodic tasks, recovery among them)."""
    log = open(server.data_dir / "celery-beat.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config.celery", "beat", "-l", "info",
         "-s", str(server.data_dir / "celerybeat-schedule")],
        cwd=REPO_ROOT, env=server.env, stdout=log, stderr=subprocess.STDOUT,
    )


def prefork_children(worker: subprocess.Popen) -> list[int]:
    """The process ids of a prefork worker's children (the processes that run its tasks)."""
    try:
        return [int(pid) for pid in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()]
    except OSError:
        return []
