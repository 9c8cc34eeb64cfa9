"""The STOW-RS body limit (APERTURE_MAX_STOW_BYTES, imaging/body_limits.py) in the real ASGI stack, in process:
a STOW POST whose credentials hold up may be far larger than an API body, up to its own limit, and is refused past
it before it is read; one without such credentials gets the API limit, so a stranger cannot make the server spool
a gigabyte to disk before it is refused."""
from __future__ import annotations

import json

import pytest

from imaging.services.accesskeys import accesskey_create, accesskey_deactivate
from imaging.services.accesstokens import accesstoken_create, accesstoken_revoke
from tests import personas
from tests.imaging.dicomweb.test_cors import call
from tests.local_store import local_datastore_create

STUDIES = "/datastore/" + "a" * 32 + "/studies"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limits(settings):
    settings.APERTURE_MAX_REQUEST_BYTES = 2048
    settings.APERTURE_MAX_STOW_BYTES = 64 * 1024
    return settings


@pytest.fixture
def credentials(store_settings):
    """Authorization headers: a SigV4 one naming an active key (its signature is not checked before the body), a
    personal access token, and the same after the key is deactivated and the token revoked."""
    datastore = local_datastore_create()
    user = personas.clinician(datastore, username="stow-limits")
    key = accesskey_create(user=user)
    token = accesstoken_create(user=user)
    sigv4 = (f"AWS4-HMAC-SHA256 Credential={key.access_key_id}/20260101/us-east-1/medical-imaging/aws4_request, "
             f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}")
    return {"sigv4": sigv4, "bearer": f"Bearer {token.token}", "key": key, "token": token}


def _stow(path, authorization, body=b"", length=None):
    headers = {"Content-Type": "application/dicom", "Content-Length": str(len(body) if length is None else length)}
    if authorization:
        headers["Authorization"] = authorization
    return call("POST", path, headers, body)


@pytest.mark.parametrize("path", [STUDIES, STUDIES + "/1.2.3"])
@pytest.mark.parametrize("kind", ["sigv4", "bearer"])
def test_a_stow_body_over_its_limit_is_refused_unread(limits, credentials, path, kind):
    status, headers, body = call("POST", path, {"Content-Type": "application/dicom", "Authorization": credentials[kind],
                                                "Content-Length": str(1024**3), "Expect": "100-continue"})
    assert status == 413
    assert headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert "65536 bytes" in json.loads(body)["message"]


@pytest.mark.parametrize("path", [STUDIES, STUDIES + "/1.2.3"])
@pytest.mark.parametrize("kind", ["sigv4", "bearer"])
def test_a_stow_body_over_the_api_limit_reaches_the_view_with_credentials_that_hold(limits, credentials, path, kind):
    status, headers, _ = _stow(path, credentials[kind], b"\0" * (32 * 1024))
    assert status != 413
    # The view authenticates in full: the SigV4 header above is incomplete (no X-Amz-Date) and its signature wrong;
    # the token is good, the data store unknown.
    assert headers["x-amzn-errortype"] in ("IncompleteSignatureException", "ResourceNotFoundException",
                                           "AccessDeniedException")


def test_without_credentials_that_hold_a_stow_body_gets_the_api_limit(limits, credentials):
    accesskey_deactivate(access_key_id=credentials["key"].access_key_id)
    accesstoken_revoke(token_id=credentials["token"].token_id)
    strangers = [None, "Bearer not-a-token", "Bearer apt_000000000000_forged", credentials["sigv4"],
                 credentials["bearer"], "AWS4-HMAC-SHA256 Credential=AKIA0000000000000000/20260101/us-east-1/"
                 "medical-imaging/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"]
    for authorization in strangers:
        status, _, content = _stow(STUDIES, authorization, length=1024**2 * 512)
        assert status == 413 and "2048 bytes" in json.loads(content)["message"], authorization


@pytest.mark.parametrize("method,path", [("GET", STUDIES), ("POST", STUDIES + "/1.2.3/series"),
                                         ("POST", "/datastore/" + "a" * 32 + "/searchImageSets")])
def test_other_routes_keep_the_api_limit(limits, method, path):
    body = b"\0" * (32 * 1024)
    status, _, content = call(method, path, {"Content-Length": str(len(body))}, body)
    assert status == 413 and "2048 bytes" in json.loads(content)["message"]
