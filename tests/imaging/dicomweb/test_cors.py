"""CORS on the DICOMweb routes (issue 14 item 3), in process: the real ASGI stack (CORS, body limits, Django) driven
with ASGI messages, since Django's test client does not run ASGI middleware. Only requests answered without the
database are sent here; signed calls are in test_cors_live.py."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application

from imaging.body_limits import BodyLimitMiddleware
from imaging.cors import CorsMiddleware

ALLOWED = "https://viewer.example.org"
STUDIES = "/datastore/" + "a" * 32 + "/studies"


@pytest.fixture
def cors(settings):
    settings.APERTURE_CORS_ORIGINS = [ALLOWED, "http://localhost:3000"]
    settings.APERTURE_MAX_REQUEST_BYTES = 2048
    settings.APERTURE_MAX_STOW_BYTES = 2048  # a POST to /studies is STOW-RS, with its own limit
    return settings


def call(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    app = CorsMiddleware(BodyLimitMiddleware(get_asgi_application()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"testserver")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]}

    async def run():
        communicator = ApplicationCommunicator(app, scope)
        await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
        start = await communicator.receive_output(10)
        content = b""
        while True:
            message = await communicator.receive_output(10)
            content += message.get("body", b"")
            if not message.get("more_body"):
                break
        await communicator.wait(10)
        return start, content

    start, content = async_to_sync(run)()
    names = [k.decode().lower() for k, _ in start["headers"]]
    assert len(names) == len(set(names)), names  # no header twice
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, content


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


def preflight(path: str, origin: str) -> tuple[int, dict[str, str], bytes]:
    return call("OPTIONS", path, {"Origin": origin, "Access-Control-Request-Method": "GET",
                                  "Access-Control-Request-Headers": "authorization,x-amz-date,x-amz-content-sha256"})


@pytest.mark.parametrize("path", [STUDIES, STUDIES + "/1.2.3/series/4.5/instances/6.7", "/datastore/x/series",
                                  "/datastore/x/instances"])
def test_preflight_from_an_allowed_origin_is_answered_before_authentication(cors, path):
    status, headers, body = preflight(path, ALLOWED)
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == ALLOWED
    assert headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")} == {
        "authorization", "accept", "content-type", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"}
    assert int(headers["access-control-max-age"]) > 0
    assert headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in headers


def test_preflight_from_an_unknown_origin_is_refused_without_cors_headers(cors):
    status, headers, body = preflight(STUDIES, "https://evil.example.com")
    assert status == 403
    assert cors_headers(headers) == {}
    assert json.loads(body)["__type"] == "AccessDeniedException"
    assert headers["x-amzn-errortype"] == "AccessDeniedException"
    # A look-alike of an allowed origin (another port, a suffix) is another origin.
    assert preflight(STUDIES, ALLOWED + ":8443")[0] == 403
    assert preflight(STUDIES, ALLOWED + ".evil.com")[0] == 403
    assert preflight(STUDIES, "null")[0] == 403


def test_body_limit_refusal_carries_cors_headers_for_an_allowed_origin(cors):
    status, headers, body = call("POST", STUDIES, {"Origin": ALLOWED, "Content-Type": "application/dicom",
                                                   "Content-Length": "4096"}, b"\0" * 4096)
    assert status == 413 and json.loads(body)["__type"] == "RequestEntityTooLargeException"
    assert headers["access-control-allow-origin"] == ALLOWED
    assert "x-amzn-ErrorType" in headers["access-control-expose-headers"]
    status, headers, _ = call("POST", STUDIES, {"Origin": "https://evil.example.com", "Content-Length": "4096"},
                              b"\0" * 4096)
    assert status == 413 and cors_headers(headers) == {}


@pytest.mark.parametrize("path", ["/datastore/" + "a" * 32 + "/imageSet/" + "b" * 32 + "/getImageSetMetadata",
                                  "/datastore", "/datastore/" + "a" * 32, "/datastore/x/studiesx"])
def test_api_routes_get_no_cors(cors, path):
    status, headers, _ = preflight(path, ALLOWED)
    assert status != 204
    assert cors_headers(headers) == {}
    assert "Origin" not in headers.get("vary", "")


def test_without_configured_origins_there_is_no_cors(settings):
    settings.APERTURE_CORS_ORIGINS = []
    status, headers, _ = preflight(STUDIES, ALLOWED)
    assert status == 404 and headers["x-amzn-errortype"] == "UnknownOperationException"
    assert cors_headers(headers) == {}


@pytest.mark.parametrize("raw, expected", [("", []), ("https://A.example.org/, http://localhost:3000",
                                                      ["https://a.example.org", "http://localhost:3000"])])
def test_configured_origins_are_read_exactly(monkeypatch, raw, expected):
    from config.env import env_origins

    monkeypatch.setenv("APERTURE_CORS_ORIGINS", raw)
    assert env_origins("APERTURE_CORS_ORIGINS") == expected


@pytest.mark.parametrize("raw", ["*", "https://*.example.org", "viewer.example.org", "https://a.example.org/ohif",
                                 "ftp://a.example.org"])
def test_a_wildcard_or_a_path_is_not_an_origin(monkeypatch, raw):
    from django.core.exceptions import ImproperlyConfigured

    from config.env import env_origins

    monkeypatch.setenv("APERTURE_CORS_ORIGINS", raw)
    with pytest.raises(ImproperlyConfigured, match="APERTURE_CORS_ORIGINS"):
        env_origins("APERTURE_CORS_ORIGINS")
