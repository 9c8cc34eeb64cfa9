"""A live DICOM listener for tests: `manage.py dicom_listener` in a subprocess beside an ApertureServer (same data
directory, database and blob store), with dcmtk as the peer.

    server = ApertureServer().start()
    listener = DicomListener(server).start()     # waits until echoscu succeeds
    listener.echo(called="STORE1")               # CompletedProcess of echoscu
    listener.stop()                              # SIGTERM: a graceful stop

`orm(server, code)` runs Python against the server's database (`manage.py shell -c`) and returns what the code
printed last, parsed as JSON: how a test sets a data store's AE title or adds a DICOM node, and reads job rows.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.paths import REPO_ROOT

# dcmtk from Debian: by full path, since pynetdicom installs Python tools of the same names into the venv.
DCMTK = Path("/usr/bin")


def dcmtk(tool: str) -> str:
    return str(DCMTK / tool)
from tests.servers import ApertureServer, free_port


@dataclass
class DicomListener:
    server: ApertureServer
    ae_title: str = "APERTURE"
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    tls_port: int = 0
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.server.data_dir / f"dicom-listener-{self.port}.log"

    @property
    def env(self) -> dict[str, str]:
        env = {**self.server.env, **self.extra_env}
        if self.tls_port:
            env["APERTURE_DICOM_TLS_PORT"] = str(self.tls_port)
        return env

    def start(self, timeout: float = 30.0, echo_as: str = "ECHOSCU") -> "DicomListener":
        self.port = self.port or free_port()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "dicom_listener", "--port", str(self.port), "--ae-title", self.ae_title],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while self.echo(calling=echo_as).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the DICOM listener did not answer C-ECHO:\n{self.log()}")
            time.sleep(0.2)
        return self

    def echo(self, *, called: str | None = None, calling: str = "ECHOSCU", port: int | None = None,
             extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        return subprocess.run(
            [dcmtk("echoscu"), "-to", "5", "-aet", calling, "-aec", called or self.ae_title, *extra, "127.0.0.1",
             str(port or self.port)],
            capture_output=True, text=True,
        )

    def storescu(self, *files: Path | str, called: str | None = None, calling: str = "STORESCU",
                 extra: tuple[str, ...] = (), port: int | None = None, timeout: float = 120.0,
                 ) -> subprocess.CompletedProcess:
        """`storescu` of `files` in one association (`-xs`-free: each file proposed in its own syntax)."""
        return subprocess.run(
            [dcmtk("storescu"), "-v", "-aet", calling, "-aec", called or self.ae_title, *extra, "127.0.0.1",
             str(port or self.port), *[str(path) for path in files]],
            capture_output=True, text=True, timeout=timeout,
        )

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then wait for the graceful stop; kill it if it hangs. The exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def orm(server: ApertureServer, code: str):
    """Run `code` in `manage.py shell` on the server's database; it prints one JSON value last, returned here."""
    result = server.manage("shell", "-c", code)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None


def datastore_ae_set(server: ApertureServer, datastore_id: str, ae_title: str) -> None:
    orm(server, "from imaging.models import Datastore; import json; "
                f"print(json.dumps(Datastore.objects.filter(pk={datastore_id!r}).update(ae_title={ae_title!r})))")


def dicom_node_add(server: ApertureServer, *, ae_title: str, host: str = "127.0.0.1", port: int = 104,
                   may_store: bool = False, may_query: bool = False, may_retrieve: bool = False) -> int:
    return orm(server, "from imaging.models import DicomNode; import json; "
                       f"node = DicomNode.objects.create(ae_title={ae_title!r}, host={host!r}, port={port}, "
                       f"may_store={may_store}, may_query={may_query}, may_retrieve={may_retrieve}); "
                       "print(json.dumps(node.id))")


def import_jobs(server: ApertureServer, datastore_id: str) -> list[dict]:
    """The data store's import jobs, oldest first, with their counts and calling AE."""
    return orm(server, "from imaging.models import ImportJob; import json; print(json.dumps([dict(id=j.id, "
                       "status=j.status, name=j.name, imported=j.imported_files, failed=j.failed_files, "
                       "calling_ae_title=j.calling_ae_title, "
                       "calling_address=j.calling_address, message=j.message, input_paths=j.input_paths) for j in "
                       f"ImportJob.objects.filter(datastore_id={datastore_id!r}).order_by('submitted_at')]))")
