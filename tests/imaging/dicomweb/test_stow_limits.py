"""The STOW-RS body limit (APERTURE_MAX_STOW_BYTES, imaging/body_limits.py) in the real ASGI stack, in process:
a STOW POST may be far larger than an API body, up to its own limit, and is refused past it before it is read."""
from __future__ import annotations

import json

import pytest

from tests.imaging.dicomweb.test_cors import call

STUDIES = "/datastore/" + "a" * 32 + "/studies"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limits(settings):
    settings.APERTURE_MAX_REQUEST_BYTES = 2048
    settings.APERTURE_MAX_STOW_BYTES = 64 * 1024
    return settings


@pytest.mark.parametrize("path", [STUDIES, STUDIES + "/1.2.3"])
def test_a_stow_body_over_its_limit_is_refused_unread(limits, path):
    status, headers, body = call("POST", path, {"Content-Type": "application/dicom",
                                                "Content-Length": str(1024**3), "Expect": "100-continue"})
    assert status == 413
    assert headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert "65536 bytes" in json.loads(body)["message"]


@pytest.mark.parametrize("path", [STUDIES, STUDIES + "/1.2.3"])
def test_a_stow_body_over_the_api_limit_reaches_the_view(limits, path):
    body = b"\0" * (32 * 1024)
    status, headers, _ = call("POST", path, {"Content-Type": "application/dicom", "Content-Length": str(len(body))},
                              body)
    assert status == 403 and headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"


@pytest.mark.parametrize("method,path", [("GET", STUDIES), ("POST", STUDIES + "/1.2.3/series"),
                                         ("POST", "/datastore/" + "a" * 32 + "/searchImageSets")])
def test_other_routes_keep_the_api_limit(limits, method, path):
    body = b"\0" * (32 * 1024)
    status, _, content = call(method, path, {"Content-Length": str(len(body))}, body)
    assert status == 413 and "2048 bytes" in json.loads(content)["message"]
