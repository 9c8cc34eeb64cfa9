"""dcmtk's storescp as a DICOM node for tests: started on a free loopback port, waited for, stopped.

dcmtk's binaries are called by their full path: the virtual environment puts pynetdicom's console scripts of the
same names (storescp, storescu, echoscu...) first on PATH."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port

DCMTK = Path("/usr/bin")


@contextlib.contextmanager
def storescp(folder: Path, *, ae_title: str, options: tuple[str, ...] = ()) -> Iterator[int]:
    """A storescp answering as `ae_title` (writing what it receives into `folder`) for the block; yields its port."""
    port = free_port()
    process = subprocess.Popen([str(DCMTK / "storescp"), *options, "-aet", ae_title, "-od", str(folder), str(port)],
                               cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("storescp did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
