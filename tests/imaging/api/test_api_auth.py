"""SigV4 authentication and error envelopes, with hand-built HTTP requests against a live server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from unittest import mock
from datetime import datetime, timedelta, timezone

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.clients import imaging_client

pytestmark = pytest.mark.live


def send(method: str, url: str, *, body: bytes = b"", headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def signed_headers(key, method, url, body=b"", *, when: datetime | None = None, region="us-east-1",
                   service="medical-imaging"):
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    signer = SigV4Auth(credentials, service, region)
    if when is None:
        signer.add_auth(request)
    else:
        # botocore reads the clock through botocore.auth.get_current_datetime; sign as if it were `when`.
        with mock.patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
            signer.add_auth(request)
    return dict(request.headers.items())


def assert_error(status, headers, body, expected_status, error_type):
    assert status == expected_status, body
    assert headers.get("x-amzn-ErrorType") == error_type
    assert headers.get("Content-Type", "").startswith("application/json")
    assert "message" in json.loads(body)


def test_unsigned_request_is_refused(server):
    assert_error(*send("GET", server.url + "/datastore"), 403, "MissingAuthenticationTokenException")


def test_unknown_access_key(server):
    fake = {"AccessKeyId": "AKIA" + "X" * 16, "SecretAccessKey": "s" * 40}
    url = server.url + "/datastore"
    assert_error(*send("GET", url, headers=signed_headers(fake, "GET", url)), 403, "UnrecognizedClientException")


def test_wrong_secret(server):
    wrong = {**server.admin_key, "SecretAccessKey": "w" * 40}
    url = server.url + "/datastore"
    assert_error(*send("GET", url, headers=signed_headers(wrong, "GET", url)), 403, "InvalidSignatureException")


def test_good_signature_by_hand(server):
    url = server.url + "/datastore?maxResults=1"
    status, _, body = send("GET", url, headers=signed_headers(server.admin_key, "GET", url))
    assert status == 200, body
    assert "datastoreSummaries" in json.loads(body)


def test_body_changed_after_signing_is_refused(server):
    url = server.url + "/datastore"
    body = json.dumps({"datastoreName": "signed", "clientToken": "abc"}).encode()
    headers = signed_headers(server.admin_key, "POST", url, body)
    tampered = json.dumps({"datastoreName": "evil", "clientToken": "abc"}).encode()
    headers.pop("Content-Length", None)
    assert_error(*send("POST", url, body=tampered, headers=headers), 403, "InvalidSignatureException")


def test_query_changed_after_signing_is_refused(server):
    url = server.url + "/datastore?maxResults=1"
    headers = signed_headers(server.admin_key, "GET", url)
    assert_error(*send("GET", server.url + "/datastore?maxResults=2", headers=headers), 403,
                 "InvalidSignatureException")


@pytest.mark.parametrize("minutes", [-6, 6])
def test_clock_skew_over_five_minutes_is_expired(server, minutes):
    url = server.url + "/datastore"
    when = datetime.now(timezone.utc) + timedelta(minutes=minutes)
    status, headers, body = send("GET", url, headers=signed_headers(server.admin_key, "GET", url, when=when))
    assert_error(status, headers, body, 403, "InvalidSignatureException")
    assert "Signature expired" in json.loads(body)["message"]


def test_wrong_region_and_service_scope(server):
    url = server.url + "/datastore"
    for kwargs in ({"region": "eu-west-1"}, {"service": "s3"}):
        assert_error(*send("GET", url, headers=signed_headers(server.admin_key, "GET", url, **kwargs)), 403,
                     "InvalidSignatureException")


def test_malformed_authorization_header(server):
    status, headers, body = send("GET", server.url + "/datastore", headers={"Authorization": "AWS4-HMAC-SHA256 junk"})
    assert_error(status, headers, body, 400, "IncompleteSignatureException")


def test_deactivated_key_is_refused(server):
    key = server.create_key()
    client = imaging_client(server.url, key)
    client.list_datastores()
    server.manage("accesskey", "deactivate", key["AccessKeyId"])
    url = server.url + "/datastore"
    assert_error(*send("GET", url, headers=signed_headers(key, "GET", url)), 403, "UnrecognizedClientException")


def test_malformed_json_body(server):
    url = server.url + "/datastore"
    body = b'{"datastoreName": "x", '
    assert_error(*send("POST", url, body=body, headers=signed_headers(server.admin_key, "POST", url, body)), 400,
                 "ValidationException")


def test_deeply_nested_json_is_a_validation_error(server):
    url = server.url + "/datastore"
    body = b"[" * 200_000 + b"]" * 200_000
    assert_error(*send("POST", url, body=body, headers=signed_headers(server.admin_key, "POST", url, body)), 400,
                 "ValidationException")


def test_json_body_of_wrong_shape(server):
    url = server.url + "/datastore"
    body = json.dumps({"datastoreName": ["not", "a", "string"], "clientToken": 5}).encode()
    status, headers, raw = send("POST", url, body=body, headers=signed_headers(server.admin_key, "POST", url, body))
    assert_error(status, headers, raw, 400, "ValidationException")
    assert "2 validation errors detected" in json.loads(raw)["message"]


def test_oversized_body(server):
    """Refused as too large (413, AWS envelope) before it is read, signed or not (tests/imaging/test_body_limits.py)."""
    url = server.url + "/datastore"
    body = b'{"datastoreName": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert_error(*send("POST", url, body=body, headers=signed_headers(server.admin_key, "POST", url, body)), 413,
                 "RequestEntityTooLargeException")


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/nothing/here"), ("PUT", "/datastore"), ("GET", "/datastore/"), ("PATCH", "/datastore/" + "0" * 32)],
)
def test_unknown_routes_and_methods(server, method, path):
    url = server.url + path
    status, headers, body = send(method, url, headers=signed_headers(server.admin_key, method, url))
    assert_error(status, headers, body, 404, "UnknownOperationException")


def test_aws_cli_works_against_the_server(server):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": server.admin_key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": server.admin_key["SecretAccessKey"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }

    def aws(*args: str) -> dict:
        completed = subprocess.run(
            [sys.executable, "-m", "awscli", "medical-imaging", *args, "--endpoint-url", server.url, "--output", "json"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout) if completed.stdout.strip() else {}

    created = aws("create-datastore", "--datastore-name", "from-cli")
    arn = aws("get-datastore", "--datastore-id", created["datastoreId"])["datastoreProperties"]["datastoreArn"]
    aws("tag-resource", "--resource-arn", arn, "--tags", "source=cli")
    assert aws("list-tags-for-resource", "--resource-arn", arn)["tags"] == {"source": "cli"}
