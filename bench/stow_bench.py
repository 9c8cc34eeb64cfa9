"""STOW-RS throughput: one multipart body of a generated CT series, stored by Aperture and by Orthanc's DICOMweb
plugin, side by side in the same run.

    .venv/bin/python bench/stow_bench.py [--slices 100] [--repeat 2] [--no-orthanc]

Aperture runs as a live server (`manage.py serve`, uvicorn, the thread task backend, file blob store, SQLite or the
DATABASE_URL's PostgreSQL) in a throw-away data directory (tests/servers.py). Its request is signed with SigV4 over
the body's SHA-256, as dicomweb-client with the AWS signer sends it, and every instance goes through the import
pipeline (HTJ2K transcode, OpenJPEG verification, checksums) before the answer. The worker pool is warmed by a
one-instance store first, as a running server has it. Each repeat stores a new copy of the series (new UIDs), so
nothing merges into an earlier one.

Orthanc (Debian's 1.10 with orthanc-dicomweb, a private instance on loopback as bench/orthanc.py starts it) receives
the same bodies at POST /dicom-web/studies and stores the files as received. Timed: from the first byte sent to the
last byte of the answer.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

BOUNDARY = "stow-bench-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'


def series_body(folder: Path, slices: int) -> Path:
    """A new CT series (bench/import_bench.py's phantom) as one multipart/related file."""
    from bench.import_bench import phantom_series

    files = folder / "files"
    phantom_series(files, slices)
    body = folder / "body"
    with open(body, "wb") as out:
        for path in sorted(files.iterdir()):
            out.write(f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            out.write(path.read_bytes())
        out.write(f"\r\n--{BOUNDARY}--".encode())
    shutil.rmtree(files)
    return body


def post(port: int, path: str, body: Path, headers: dict[str, str]) -> tuple[int, bytes, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    with open(body, "rb") as stream:
        connection.request("POST", path, body=stream, headers={**headers, "Content-Length": str(body.stat().st_size)})
        response = connection.getresponse()
        content = response.read()
    return response.status, content, time.perf_counter() - started


class Aperture:
    def start(self) -> "Aperture":
        import django

        django.setup()
        from tests import personas
        from tests.clients import imaging_client, wait_for
        from tests.servers import ApertureServer

        self.server = ApertureServer().start()
        self.key = personas.live_key(self.server)
        mi = imaging_client(self.server.url, self.key)
        self.datastore_id = mi.create_datastore(datastoreName="stow-bench")["datastoreId"]
        wait_for(lambda: mi.get_datastore(datastoreId=self.datastore_id)["datastoreProperties"]["datastoreStatus"]
                 == "ACTIVE")
        return self

    def store(self, body: Path) -> float:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        digest = hashlib.sha256()
        with open(body, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        path = f"/datastore/{self.datastore_id}/studies"
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Content-SHA256": digest.hexdigest(),
                   "Host": f"127.0.0.1:{self.server.port}"}
        request = AWSRequest(method="POST", url=self.server.url + path, headers=headers)
        SigV4Auth(Credentials(self.key["AccessKeyId"], self.key["SecretAccessKey"]), "medical-imaging",
                  "us-east-1").add_auth(request)
        status, content, seconds = post(self.server.port, path, body, dict(request.headers.items()))
        if status != 200:
            raise RuntimeError(f"Aperture answered {status}: {content[:500]!r}")
        return seconds

    def stop(self) -> None:
        self.server.stop()


class OrthancDicomweb:
    """bench/orthanc.py's private Orthanc with the DICOMweb plugin loaded."""

    def start(self) -> "OrthancDicomweb":
        from bench.orthanc import LOOPBACK_SHIM, ORTHANC, _free_port

        self.dir = Path(tempfile.mkdtemp(prefix="orthanc-stow-"))
        self.port = _free_port()
        shim, source = self.dir / "loopback.so", self.dir / "loopback.c"
        source.write_text(LOOPBACK_SHIM)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(source), "-ldl"], check=True)
        config = {"Name": "stow", "StorageDirectory": str(self.dir / "storage"),
                  "IndexDirectory": str(self.dir / "index"),
                  "HttpPort": self.port, "DicomPort": _free_port(), "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": False, "HttpCompressionEnabled": False,
                  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        (self.dir / "orthanc.json").write_text(json.dumps(config))
        log = open(self.dir / "orthanc.log", "wb")
        self.process = subprocess.Popen([ORTHANC, str(self.dir / "orthanc.json")], stdout=log,
                                        stderr=subprocess.STDOUT, env={"LD_PRELOAD": str(shim)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/dicom-web/studies")
                if connection.getresponse().status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("Orthanc's DICOMweb root did not answer")

    def store(self, body: Path) -> float:
        status, content, seconds = post(self.port, "/dicom-web/studies", body,
                                        {"Content-Type": CONTENT_TYPE, "Accept": "application/dicom+json"})
        if status != 200:
            raise RuntimeError(f"Orthanc answered {status}: {content[:500]!r}")
        return seconds

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-orthanc", action="store_true")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stow-bench-"))
    peers = [("Aperture STOW-RS (HTJ2K, verified)", Aperture().start())]
    if not options.no_orthanc:
        peers.append(("Orthanc STOW-RS (as received)", OrthancDicomweb().start()))
    try:
        warm = series_body(work / "warm", 1)
        for _, peer in peers:
            peer.store(warm)
        rows = []
        for repeat in range(options.repeat):
            body = series_body(work / f"series-{repeat}", options.slices)
            megabytes = body.stat().st_size / 1e6
            for name, peer in peers:
                seconds = peer.store(body)
                rows.append((name, options.slices, megabytes, seconds))
            body.unlink()
        print(f"{'peer':38} {'files':>6} {'MB':>7} {'seconds':>8} {'files/s':>8} {'MB/s':>6}")
        for name, files, megabytes, seconds in rows:
            print(f"{name:38} {files:6d} {megabytes:7.1f} {seconds:8.2f} {files / seconds:8.1f} "
                  f"{megabytes / seconds:6.1f}")
    finally:
        for _, peer in peers:
            peer.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
