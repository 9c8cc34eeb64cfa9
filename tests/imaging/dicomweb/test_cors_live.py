"""CORS on the DICOMweb routes (issue 14 item 3) against a live server: a browser's preflight and its signed GET
from an allowed origin and from a refused one; the HealthImaging API and the pages are unaffected; a server without
APERTURE_CORS_ORIGINS sends no CORS headers at all."""
from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import pydicom
import pytest

from tests import personas
from tests.clients import imaging_client, wait_for
from tests.dicomweb import instance_url, signed_get
from tests.importing import run_import
from tests.paths import DICOM_DIR
from tests.servers import ApertureServer

pytestmark = pytest.mark.live

ALLOWED = "https://ohif.example.org"
REFUSED = "https://evil.example.com"
NAME = "ELE__CT_small.dcm"


@pytest.fixture(scope="module")
def cors_server(seaweed):
    server = ApertureServer(extra_env={**seaweed.env(), "APERTURE_CORS_ORIGINS": f"{ALLOWED}, http://localhost:3000"})
    server.start()
    server.admin_key = personas.live_key(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def instance(cors_server, s3):
    mi = imaging_client(cors_server.url, cors_server.admin_key)
    datastore_id = mi.create_datastore(datastoreName="cors")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    outcome = run_import(mi, s3, datastore_id, {NAME: DICOM_DIR / NAME})
    source = pydicom.dcmread(DICOM_DIR / NAME)
    return instance_url(cors_server.url, datastore_id, source.StudyInstanceUID, source.SeriesInstanceUID,
                        source.SOPInstanceUID, outcome.line_for(NAME)["importResponse"]["imageSetId"])


def plain(method: str, url: str, headers: dict[str, str]):
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def preflight(url: str, origin: str):
    return plain("OPTIONS", url, {"Origin": origin, "Access-Control-Request-Method": "GET",
                                  "Access-Control-Request-Headers": "authorization,x-amz-date,x-amz-content-sha256"})


def cors_headers(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("access-control-")}


def test_allowed_origin_preflight_then_signed_get(cors_server, instance):
    status, headers, body = preflight(instance, ALLOWED)
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    assert headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert "X-Amz-Content-Sha256" in headers["Access-Control-Allow-Headers"]
    assert headers["Vary"] == "Origin"

    status, headers, body = signed_get(instance, cors_server.admin_key, unsigned={"Origin": ALLOWED})
    assert status == 200, body
    assert pydicom.dcmread(io.BytesIO(body)).SOPInstanceUID
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    exposed = {h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Content-Type", "Content-Length", "Warning", "x-amzn-RequestId", "x-amzn-ErrorType",
            "Content-Disposition", "WWW-Authenticate"} <= exposed
    assert "Origin" in headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in headers


def test_allowed_origin_error_responses_carry_cors_headers(cors_server, instance):
    missing = instance.replace("/instances/", "/instances/9.9.9")
    status, headers, body = signed_get(missing, cors_server.admin_key, unsigned={"Origin": ALLOWED})
    assert status == 404 and json.loads(body)["__type"] == "ResourceNotFoundException"
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    status, headers, body = plain("GET", instance, {"Origin": ALLOWED})  # unsigned: refused in the envelope
    assert status in (400, 403) and "__type" in json.loads(body)
    assert headers["Access-Control-Allow-Origin"] == ALLOWED


def test_refused_origin_gets_no_cors_headers(cors_server, instance):
    status, headers, body = preflight(instance, REFUSED)
    assert status == 403 and json.loads(body)["__type"] == "AccessDeniedException"
    assert cors_headers(headers) == {}
    status, headers, body = signed_get(instance, cors_server.admin_key, unsigned={"Origin": REFUSED})
    assert status == 200  # a non-browser client may still call; the browser hides the answer from the page
    assert cors_headers(headers) == {}


def test_api_routes_and_pages_are_unaffected(cors_server, instance):
    datastore_path = instance.split("/studies/")[0]
    for url in (datastore_path, cors_server.url + "/datastore", cors_server.url + "/accounts/login/"):
        status, headers, _ = preflight(url, ALLOWED)
        assert status != 204 and cors_headers(headers) == {}
        status, headers, _ = plain("GET", url, {"Origin": ALLOWED})
        assert cors_headers(headers) == {}


def test_server_without_cors_origins_sends_none(server):
    url = f"{server.url}/datastore/{'a' * 32}/studies"
    status, headers, _ = preflight(url, ALLOWED)
    assert status == 404 and cors_headers(headers) == {}
    status, headers, _ = signed_get(url + "/1.2/series/3.4/instances/5.6", server.admin_key,
                                    unsigned={"Origin": ALLOWED})
    assert cors_headers(headers) == {}
