"""The deployment of deploy/ as an operator runs it, on loopback ports, for the end-to-end test and bench/load_bench.

`deployment_start()` reads deploy/Procfile and deploy/nginx/aperture.conf and brings up, in the README's order:
its own database on the running PostgreSQL, its own Redis database (APERTURE_DEPLOY_REDIS_DB, default 15), a
SeaweedFS S3 store (tests/s3.py) for blobs and import input, one shared data folder and one pair of shared secrets;
`manage.py migrate` and `collectstatic` once; then the Procfile's `web` processes (each on its own $PORT), its
`worker` processes (prefork, as written), `beat`, and Debian's nginx in front of the web processes.

Every process runs in a session of its own, so `kill()` takes a whole process group (a Celery worker and its
children, as when its machine dies) and `stop()` leaves nothing behind. nginx runs unprivileged-style: no daemon,
`-p` prefix and every temp path under the deployment's folder, its site file wrapped in a main config of ours with
its ports, upstream servers and static root substituted (the substitutions fail loudly if the site file changes).

It must not import a conftest or Django (it only starts processes; tests talk to them over HTTP).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.clients import wait_for
from tests.paths import REPO_ROOT
from tests.s3 import SeaweedS3
from tests.servers import PostgresDatabase, free_port, wait_for_http

PROCFILE = REPO_ROOT / "deploy" / "Procfile"
NGINX_SITE = REPO_ROOT / "deploy" / "nginx" / "aperture.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BLOB_BUCKET = "aperture-blobs"


def procfile_read(path: Path = PROCFILE) -> dict[str, str]:
    """The process types of a Procfile and their commands; comment lines are not process types."""
    types: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line.strip())
        if match:
            types[match.group(1)] = match.group(2)
    return types


def nginx_site_for(site: str, *, port: int, upstream_ports: list[int], static_root: Path) -> str:
    """deploy/nginx/aperture.conf with our loopback port, our web processes and our static folder."""
    def substitute(pattern: str, replacement: str, text: str, *, count: int = 0) -> str:
        result, made = re.subn(pattern, replacement, text, count=count, flags=re.MULTILINE)
        if not made:
            raise AssertionError(f"deploy/nginx/aperture.conf no longer matches {pattern!r}")
        return result

    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstream_ports)
    site = substitute(r"^(\s*server 127\.0\.0\.1:\d+[^;]*;\n)+", servers + "\n", site, count=1)
    site = substitute(r"^\s*listen \[::\]:80;\n", "", site)
    site = substitute(r"^(\s*)listen 80;", rf"\g<1>listen 127.0.0.1:{port};", site)
    return substitute(r"alias /var/lib/aperture/staticfiles/;", f"alias {static_root}/;", site)


def nginx_main_config(*, prefix: Path, site_path: Path) -> str:
    """A main nginx.conf of our own around the site: no daemon, pid, logs and temp files under `prefix`."""
    as_root = "user root;\n" if os.geteuid() == 0 else ""  # workers read the test's 0700 temp folders
    temps = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{as_root}daemon off;\nworker_processes 2;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} warn;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n"
            f"    access_log {prefix / 'access.log'};\n{temps}\n    include {site_path};\n}}\n")


@dataclass
class Process:
    """One process of the deployment, in its own session (its id is its process group's)."""
    name: str
    popen: subprocess.Popen
    log_path: Path
    port: int | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group, as when the machine under it dies."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(10)

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Deployment:
    root: Path
    env: dict[str, str]
    database: PostgresDatabase
    seaweed: SeaweedS3
    procfile: dict[str, str]
    web: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    beat: Process | None = None
    dicom: Process | None = None
    nginx: Process | None = None
    nginx_port: int = 0

    @property
    def url(self) -> str:
        """Where clients go: nginx."""
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.env["APERTURE_DATA_DIR"])

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=self.env, capture_output=True,
                              text=True)
        if check and done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done

    def spawn(self, process_type: str, *, name: str, port: int | None = None, extra_args: str = "",
              extra_env: dict[str, str] | None = None) -> Process:
        """Start the Procfile's `process_type` command through the shell, as foreman does ($PORT, $VARS)."""
        command = self.procfile[process_type] + (f" {extra_args}" if extra_args else "")
        env = {**self.env, **({"PORT": str(port)} if port else {}), **(extra_env or {})}
        log_path = self.root / "logs" / f"{name}.log"
        log = open(log_path, "ab")
        popen = subprocess.Popen(["/bin/sh", "-c", f"exec {command}"], cwd=REPO_ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return Process(name=name, popen=popen, log_path=log_path, port=port)

    def start_web(self) -> Process:
        process = self.spawn("web", name=f"web{len(self.web) + 1}", port=free_port())
        wait_for_http(f"http://127.0.0.1:{process.port}/accounts/login/", timeout=60)
        self.web.append(process)
        return process

    def restart_web(self, index: int) -> Process:
        """Web process `index` again, on its old port (nginx's upstream names it)."""
        old = self.web[index]
        old.kill()
        process = self.spawn("web", name=f"{old.name}-again", port=old.port)
        wait_for_http(f"http://127.0.0.1:{process.port}/accounts/login/", timeout=60)
        self.web[index] = process
        return process

    def start_worker(self, *, concurrency: int | None = None, extra_args: str = "") -> Process:
        name = f"worker{len(self.workers) + 1}"
        # Two workers on one host need names of their own (Celery warns of duplicate node names otherwise).
        extra = f"-n {name}-{secrets.token_hex(3)}@%h" + (f" --concurrency={concurrency}" if concurrency else "")
        extra += f" {extra_args}" if extra_args else ""
        process = self.spawn("worker", name=name, extra_args=extra)
        wait_for(lambda: " ready." in process.log() or not process.alive(), timeout=60, interval=0.2,
                 what=f"{name} ready")
        if not process.alive():
            raise RuntimeError(f"{name} exited:\n{process.log()[-3000:]}")
        self.workers.append(process)
        return process

    def start_dicom(self) -> Process:
        """The Procfile's DICOM listener on a loopback port of its own, answering C-ECHO before this returns."""
        port = free_port()
        self.dicom = self.spawn("dicom", name="dicom", port=port,
                                extra_env={"APERTURE_DICOM_HOST": "127.0.0.1", "APERTURE_DICOM_PORT": str(port)})
        deadline = time.monotonic() + 60
        while True:
            # Any answer, an association rejected for its unknown AE titles included, means it listens.
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return self.dicom
            if self.dicom.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the DICOM listener did not start:\n{self.dicom.log()[-3000:]}")
            time.sleep(0.2)

    def start_beat(self) -> Process:
        self.beat = self.spawn("beat", name="beat")
        return self.beat

    def start_nginx(self) -> Process:
        prefix = self.root / "nginx"
        prefix.mkdir(exist_ok=True)
        self.nginx_port = self.nginx_port or free_port()
        self.nginx_write()
        log_path = self.root / "logs" / "nginx.log"
        log = open(log_path, "ab")
        popen = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.nginx = Process(name="nginx", popen=popen, log_path=log_path, port=self.nginx_port)
        wait_for_http(self.url + "/accounts/login/", timeout=30)
        return self.nginx

    def nginx_reload(self) -> None:
        """Point nginx at the web processes now in `self.web` (a new config, then SIGHUP, as `nginx -s reload`)."""
        self.nginx_write()
        os.kill(self.nginx.popen.pid, signal.SIGHUP)
        time.sleep(1.0)  # the old workers finish their requests; new ones start with the new upstream

    def nginx_write(self) -> None:
        prefix = self.root / "nginx"
        site = nginx_site_for(NGINX_SITE.read_text(), port=self.nginx_port,
                              upstream_ports=[p.port for p in self.web if p.port],
                              static_root=self.data_dir / "staticfiles")
        (prefix / "aperture.conf").write_text(site)
        (prefix / "nginx.conf").write_text(nginx_main_config(prefix=prefix, site_path=prefix / "aperture.conf"))

    def postgres_connections(self) -> int:
        """Connections open to this deployment's database right now (every process's together)."""
        with self.database._admin() as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                (self.database.name,)).fetchone()[0]

    def logs(self) -> str:
        """The tail of every process's log, for a failing test's message."""
        parts = []
        for process in [*self.web, *self.workers, self.beat, self.dicom, self.nginx]:
            if process is not None:
                parts.append(f"--- {process.name} ({'alive' if process.alive() else 'exited'})\n"
                             f"{process.log()[-2500:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for process in [self.nginx, self.dicom, self.beat, *self.workers, *self.web]:
            if process is not None:
                process.stop(grace=5)
        redis_flush(self.env["REDIS_URL"])
        self.seaweed.stop()
        self.database.drop()
        if not os.environ.get("APERTURE_KEEP_TEST_DATA"):
            shutil.rmtree(self.root, ignore_errors=True)


def redis_flush(url: str) -> None:
    """Empty this deployment's own Redis database (queues, channel groups, shared state), and only that one."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def deployment_env(*, root: Path, database_url: str, seaweed: SeaweedS3, redis_url: str) -> dict[str, str]:
    """The environment every process shares: deploy/aperture.env.example filled in for loopback."""
    data_dir = root / "data"
    data_dir.mkdir()
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "APERTURE_", "PROMETHEUS_"))}
    env.pop("DATABASE_URL", None)
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "APERTURE_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "APERTURE_TASKS": "celery",
        "APERTURE_BLOB_STORE": f"s3://{BLOB_BUCKET}/store",
        **seaweed.env(),
        "APERTURE_DATA_DIR": str(data_dir),
        "PROMETHEUS_MULTIPROC_DIR": str(data_dir / "metrics"),
        "APERTURE_METRICS_TOKEN": secrets.token_urlsafe(16),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "APERTURE_TRUSTED_PROXIES": "127.0.0.1",
        "APERTURE_SHARED_STATE_PREFIX": f"deploy-{secrets.token_hex(4)}",
    })
    return env


def deployment_start(*, web: int = 2, workers: int = 2, worker_concurrency: int | None = None,
                     worker_args: str = "", extra_env: dict[str, str] | None = None) -> Deployment:
    """The whole deployment, up and answering through nginx; call `stop()` when done (also on failure)."""
    root = Path(tempfile.mkdtemp(prefix="aperture-deploy-"))
    (root / "logs").mkdir()
    pg_base = os.environ.get("APERTURE_TEST_POSTGRES", "postgres://root@127.0.0.1:5432")
    database_url = os.environ.get("DATABASE_URL", "")
    database = PostgresDatabase(database_url if database_url.startswith("postgres") else f"{pg_base}/postgres")
    database.create()
    redis_url = f"redis://127.0.0.1:6379/{int(os.environ.get('APERTURE_DEPLOY_REDIS_DB', '15'))}"
    redis_flush(redis_url)  # a run cut off before its teardown must not feed this one stale tasks
    seaweed = SeaweedS3()
    deployment = Deployment(root=root, env={}, database=database, seaweed=seaweed, procfile=procfile_read())
    try:
        seaweed.start()
        seaweed.client().create_bucket(Bucket=BLOB_BUCKET)
        deployment.env = deployment_env(root=root, database_url=database.url, seaweed=seaweed, redis_url=redis_url)
        deployment.env.update(extra_env or {})
        deployment.manage("migrate", "--noinput", "-v0")  # once, before any web process starts
        deployment.manage("collectstatic", "--noinput", "-v0")
        for _ in range(web):
            deployment.start_web()
        for _ in range(workers):
            deployment.start_worker(concurrency=worker_concurrency, extra_args=worker_args)
        deployment.start_beat()
        deployment.start_nginx()
    except BaseException:
        logs = deployment.logs()
        deployment.stop()
        raise RuntimeError(f"the deployment did not come up:\n{logs}")
    return deployment


def http_get(url: str, *, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

