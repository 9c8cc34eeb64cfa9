"""A large STOW-RS body against a live server (uvicorn, the real ASGI stack), its memory read from /proc: the body is
spooled to disk while it is hashed, never held, so the server's peak resident memory hardly moves."""
from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydicom.uid import generate_uid

from tests import personas
from tests.clients import imaging_client, wait_for
from tests.dicomgen import ct_dataset
from tests.servers import ApertureServer

pytestmark = pytest.mark.live

MIB = 1024 * 1024
BOUNDARY = "stow-memory"


@pytest.fixture(scope="module")
def own_server():
    server = ApertureServer().start()
    key = personas.live_key(server)
    mi = imaging_client(server.url, key)
    datastore_id = mi.create_datastore(datastoreName="stow-memory")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    yield server, key, datastore_id
    server.stop()


def peak_rss(server: ApertureServer) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def test_a_256_mib_stow_body_does_not_grow_the_server(own_server, tmp_path):
    server, key, datastore_id = own_server
    study = generate_uid()
    big = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())  # another study: 0xA900, never imported
    big.add_new(0x00091011, "OB", b"\0" * (256 * MIB))
    body_path = tmp_path / "body"
    with open(body_path, "wb") as handle:
        handle.write(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        big.save_as(handle, enforce_file_format=True)
        handle.write(f"\r\n--{BOUNDARY}--".encode())
    del big
    path = f"/datastore/{datastore_id}/studies/{study}"
    headers = {"Content-Type": f"multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}",
               "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD", "Host": f"127.0.0.1:{server.port}"}
    request = AWSRequest(method="POST", url=server.url + path, headers=headers)
    SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "medical-imaging", "us-east-1").add_auth(request)
    before = peak_rss(server)
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    with open(body_path, "rb") as body:
        connection.request("POST", path, body=body, headers={**dict(request.headers.items()),
                                                              "Content-Length": str(body_path.stat().st_size)})
        response = connection.getresponse()
        answer = json.loads(response.read())
    seconds = time.monotonic() - started
    assert response.status == 409, answer
    assert answer["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    grown = peak_rss(server) - before
    assert grown < 48 * MIB, f"the server grew by {grown / MIB:.0f} MiB for a 256 MiB body"
    print(f"256 MiB STOW body: answered in {seconds:.1f}s, peak RSS grew {grown / MIB:.1f} MiB")
