"""The STOW-RS body limit (APERTURE_MAX_STOW_BYTES, imaging/body_limits.py) in the real ASGI stack, in process:
a STOW POST whose credentials hold up may be far larger than an API body, up to its own limit, and is refused past
it before it is read; one without such credentials gets the API limit, so a stranger cannot make the server spool
a gigabyte to disk before it is refused."""
from __future__ import annotations

import json

import pytest

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

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
    """Authorization headers of an administrator (who may store): a SigV4 one naming an active key without the
    payload hash header (so its signature cannot be checked before the body), the same declaring UNSIGNED-PAYLOAD
    and signed for real, and a personal access token; and the paths of the data store they may store into."""
    datastore = local_datastore_create()
    user = personas.admin("stow-limits")
    key = accesskey_create(user=user)
    token = accesstoken_create(user=user)
    sigv4 = (f"AWS4-HMAC-SHA256 Credential={key.access_key_id}/20260101/us-east-1/medical-imaging/aws4_request, "
             f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}")
    return {"sigv4": sigv4, "bearer": f"Bearer {token.token}", "key": key, "token": token, "datastore": datastore,
            "studies": f"/datastore/{datastore.id}/studies"}


def _signed_unsigned_payload(key, path: str, *, tamper: bool = False) -> dict[str, str]:
    request = AWSRequest(method="POST", url=f"http://testserver{path}",
                         headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "medical-imaging", "us-east-1").add_auth(request)
    headers = {name: request.headers[name] for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256")}
    if tamper:
        headers["X-Amz-Date"] = headers["X-Amz-Date"][:-3] + "00Z" if not headers["X-Amz-Date"].endswith("00Z") \
            else headers["X-Amz-Date"][:-3] + "01Z"
    return headers


def _stow(path, authorization, body=b"", length=None, extra=None):
    headers = {"Content-Type": "application/dicom", "Content-Length": str(len(body) if length is None else length)}
    if authorization:
        headers["Authorization"] = authorization
    headers.update(extra or {})
    return call("POST", path, headers, body)


@pytest.mark.parametrize("study", ["", "/1.2.3"])
@pytest.mark.parametrize("kind", ["sigv4", "bearer", "signed"])
def test_a_stow_body_over_its_limit_is_refused_unread(limits, credentials, study, kind):
    path = credentials["studies"] + study
    headers = {"Content-Type": "application/dicom", "Content-Length": str(1024**3), "Expect": "100-continue"}
    if kind == "signed":
        headers.update(_signed_unsigned_payload(credentials["key"], path))
    else:
        headers["Authorization"] = credentials[kind]
    status, headers, body = call("POST", path, headers)
    assert status == 413
    assert headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert "65536 bytes" in json.loads(body)["message"]


@pytest.mark.parametrize("study", ["", "/1.2.3"])
@pytest.mark.parametrize("kind", ["sigv4", "bearer"])
def test_a_stow_body_over_the_api_limit_reaches_the_view_with_credentials_that_hold(limits, credentials, study,
                                                                                   kind):
    status, headers, _ = _stow(credentials["studies"] + study, credentials[kind], b"\0" * (32 * 1024))
    assert status != 413
    # The view authenticates in full: the SigV4 header above is incomplete (no X-Amz-Date) and its signature wrong;
    # the token is good and the body no DICOM.
    assert status == 400 if kind == "sigv4" else status in (200, 400, 409)


def test_without_credentials_that_hold_a_stow_body_gets_the_api_limit(limits, credentials):
    studies = credentials["studies"]
    reader = accesskey_create(user=personas.admin("stow-reader"), policy="AWSHealthImagingReadOnlyAccess")
    outsider_token = accesstoken_create(user=personas.outsider("stow-outsider"))
    strangers = [
        (studies, None, {}), (studies, "Bearer not-a-token", {}), (studies, "Bearer apt_000000000000_forged", {}),
        # A signature that does not hold although the payload hash is declared (the date was changed after signing).
        (studies, None, _signed_unsigned_payload(credentials["key"], studies, tamper=True)),
        # Keys and tokens that hold, but may not store there.
        (studies, None, _signed_unsigned_payload(reader, studies)),
        (studies, f"Bearer {outsider_token.token}", {}),
        ("/datastore/" + "a" * 32 + "/studies", credentials["bearer"], {}),
        ("/datastore/" + "a" * 32 + "/studies", credentials["sigv4"], {}),
    ]
    for path, authorization, extra in strangers:
        status, _, content = _stow(path, authorization, length=1024**2 * 512, extra=extra)
        assert status == 413 and "2048 bytes" in json.loads(content)["message"], (path, authorization, extra)
    accesskey_deactivate(access_key_id=credentials["key"].access_key_id)
    accesstoken_revoke(token_id=credentials["token"].token_id)
    for authorization in (credentials["sigv4"], credentials["bearer"]):
        status, _, content = _stow(studies, authorization, length=1024**2 * 512)
        assert status == 413 and "2048 bytes" in json.loads(content)["message"], authorization


@pytest.mark.parametrize("method,path", [("GET", STUDIES), ("POST", STUDIES + "/1.2.3/series"),
                                         ("POST", "/datastore/" + "a" * 32 + "/searchImageSets")])
def test_other_routes_keep_the_api_limit(limits, method, path):
    body = b"\0" * (32 * 1024)
    status, _, content = call(method, path, {"Content-Length": str(len(body))}, body)
    assert status == 413 and "2048 bytes" in json.loads(content)["message"]


@pytest.mark.parametrize("path,route_class", [("/account/tokens/", "form"), ("/accounts/login/", "form"),
                                              ("/datastore", "api")])
def test_pages_get_the_form_limit(path, route_class):
    from asgiref.sync import async_to_sync

    from imaging.body_limits import rule_for

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    assert async_to_sync(rule_for)(scope).route_class == route_class


AUTHORIZER_ARN = "arn:aws:lambda:us-east-1:000000000000:function:stow-authorizer"
AUTHORIZER_CALLS: list[str] = []


def counting_authorizer(event: dict) -> dict:
    """A data store's authorizer (SPEC 12.6) that lets every token store, and counts how often it is asked."""
    AUTHORIZER_CALLS.append(event["operation"])
    return {"isTokenValid": True, "roleArn": "arn:aws:iam::000000000000:role/stow-writer"}


def test_a_stow_bearer_token_is_judged_once_although_checked_before_the_body(limits, credentials, settings):
    import time

    import jwt

    from imaging.models import ManagedPolicy, Role
    from tests.oidc_issuer import rsa_key

    datastore = credentials["datastore"]
    settings.APERTURE_AUTHORIZERS = {AUTHORIZER_ARN: f"{__name__}:counting_authorizer"}
    datastore.lambda_authorizer_arn = AUTHORIZER_ARN
    datastore.save()
    Role.objects.create(name="stow-writer", policy=ManagedPolicy.FULL_ACCESS)
    now = int(time.time())
    token = jwt.encode({"iat": now, "exp": now + 300}, rsa_key(), algorithm="RS256")
    AUTHORIZER_CALLS.clear()
    # Over the API limit: only a caller the body limit found good before the body gets this far.
    status, _, _ = _stow(credentials["studies"], f"Bearer {token}", b"\0" * (32 * 1024))
    assert status in (200, 400, 409)
    assert AUTHORIZER_CALLS == ["StoreDICOM"]
