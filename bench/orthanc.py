"""Orthanc, the peer the import benchmark measures against: a private instance on loopback, and its REST ingest.

Debian's Orthanc 1.10 has no bind-address option and listens on every interface. The instance started here is kept
on loopback by a tiny LD_PRELOAD library, compiled at run time with gcc, that rewrites binds to INADDR_ANY into
binds to 127.0.0.1. It runs from its own JSON configuration in a throw-away folder (storage, index, ports); the
system service is never used. Benchmarks only: tests and CI do not install or start Orthanc.
"""
from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

LOOPBACK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *address, socklen_t length) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (address && address->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in copy;
        memcpy(&copy, address, sizeof copy);
        if (copy.sin_addr.s_addr == htonl(INADDR_ANY)) copy.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return real_bind(fd, (const struct sockaddr *)&copy, sizeof copy);
    }
    return real_bind(fd, address, length);
}
"""


def orthanc_require(*, dicomweb: bool = False) -> None:
    """Install Debian's orthanc (and orthanc-dicomweb) packages when missing (the benchmark machine only, never CI)."""
    packages = [name for name, path in (("orthanc", ORTHANC), ("orthanc-dicomweb", DICOMWEB_PLUGIN))
                if (dicomweb or name == "orthanc") and not Path(path).exists()]
    if not packages:
        return
    print(f"running `apt-get install -y {' '.join(packages)}` for the Orthanc rows ...", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages], check=True,
                   env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orthanc:
    """One private Orthanc on loopback ports, in its own folder; `stop()` ends it and removes the folder."""

    def __init__(self, *, dicomweb: bool = False, aet: str = "ORTHANC", nodelay: bool = False) -> None:
        self.dicomweb = dicomweb
        # TCP_NODELAY=1 in its environment: DCMTK (inside Orthanc) then turns Nagle's algorithm off on its DICOM
        # connections. Debian's build leaves it on, and each C-STORE answer then waits ~40 ms for a delayed ACK
        # (about 20 files/s from storescu whatever the disk), which measures TCP rather than Orthanc.
        self.nodelay = nodelay
        self.aet = aet  # its DICOM AE title; with DicomCheckCalledAet off it answers to any called AE title
        self.dir = Path(tempfile.mkdtemp(prefix="orthanc-bench-"))
        self.http_port, self.dicom_port = _free_port(), _free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> Orthanc:
        orthanc_require(dicomweb=self.dicomweb)
        shim = self.dir / "loopback.so"
        source = self.dir / "loopback.c"
        source.write_text(LOOPBACK_SHIM)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(source), "-ldl"], check=True)
        config = {
            "Name": "bench", "StorageDirectory": str(self.dir / "storage"), "IndexDirectory": str(self.dir / "index"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "HttpCompressionEnabled": False, "Plugins": [],
            # The DICOM port (bench/dimse_bench.py): any calling AE may echo, store and find; stored as received.
            "DicomAet": self.aet, "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True, "LimitFindResults": 0,
        }
        if self.dicomweb:
            config["Plugins"] = [DICOMWEB_PLUGIN]
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        (self.dir / "orthanc.json").write_text(json.dumps(config))
        log = open(self.dir / "orthanc.log", "wb")
        self.process = subprocess.Popen([ORTHANC, str(self.dir / "orthanc.json")], stdout=log,
                                        stderr=subprocess.STDOUT,
                                        env={"LD_PRELOAD": str(shim), **({"TCP_NODELAY": "1"} if self.nodelay else {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("Orthanc exited: " + (self.dir / "orthanc.log").read_text(errors="replace")[-2000:])
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=2)
                connection.request("GET", "/system")
                if connection.getresponse().status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("Orthanc did not answer on its HTTP port")

    def ingest_seconds(self, paths: list[Path], *, uploads: int = 2) -> float:
        """POST every file to /instances, `uploads` at a time over kept-alive connections; seconds for all."""
        bodies = [path.read_bytes() for path in paths]

        def post_all(share: list[bytes]) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=60)
            for body in share:
                connection.request("POST", "/instances", body=body, headers={"Content-Type": "application/dicom"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"Orthanc refused an instance: HTTP {response.status}")
            connection.close()

        start = time.perf_counter()
        with ThreadPoolExecutor(uploads) as pool:
            list(pool.map(post_all, [bodies[n::uploads] for n in range(uploads)]))
        return time.perf_counter() - start

    def count(self, kind: str = "Instances") -> int:
        """How many instances (or "Studies", "Series", "Patients") Orthanc holds, from GET /statistics."""
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=60)
        connection.request("GET", "/statistics")
        body = connection.getresponse().read()
        connection.close()
        return int(json.loads(body)["Count" + kind])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
