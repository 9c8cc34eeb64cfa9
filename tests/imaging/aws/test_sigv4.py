"""The SigV4 verifier against requests signed by botocore itself."""
from __future__ import annotations

from datetime import datetime, timezone
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from imaging.aws import sigv4

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def botocore_signed(method: str, url: str, body: bytes = b"") -> sigv4.SignedRequest:
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4Auth(Credentials("AKIDEXAMPLE", SECRET), "medical-imaging", "us-east-1").add_auth(request)
    parts = urlsplit(url)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = parts.netloc
    return sigv4.SignedRequest(method=method, raw_path=parts.path, query_string=parts.query, headers=headers,
                               body=body)


def check(request: sigv4.SignedRequest, secret: str = SECRET) -> None:
    auth = sigv4.parse_authorization(request.headers)
    sigv4.verify(request, auth, secret, regions=["us-east-1"], max_skew=300, now=NOW)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/datastore",
        "http://localhost:8080/datastore?maxResults=10&datastoreStatus=ACTIVE",
        "http://localhost:8080/tags/arn%3Aaws%3Amedical-imaging%3Aus-east-1%3A000000000000%3Adatastore%2F"
        + "a" * 32,
        "http://localhost:8080/tags/x?tagKeys=b&tagKeys=a%20c",
    ],
)
def test_botocore_signatures_verify(url):
    check(botocore_signed("GET", url))


def test_a_query_signed_as_sent_verifies_and_binds_its_bytes():
    """dicomweb-client (requests) sends a space as `+` and botocore signs the URL's query as it stands."""
    url = "http://localhost:8080/datastore/x/studies?PatientName=Doe%5EJohn*&PatientID=no+such+patient"
    check(botocore_signed("GET", url))
    signed = botocore_signed("GET", url)
    tampered = sigv4.SignedRequest(**{**signed.__dict__, "query_string": signed.query_string.replace("no+", "an+")})
    with pytest.raises(sigv4.InvalidSignature):
        check(tampered)


def test_canonical_uri_encodes_twice():
    assert sigv4.canonical_uri("/tags/arn%3Aaws%2Fx") == "/tags/arn%253Aaws%252Fx"
    assert sigv4.canonical_uri("/a/./b/../c") == "/a/c"


def test_body_tamper_is_detected():
    signed = botocore_signed("POST", "http://localhost/datastore", b'{"a": 1}')
    tampered = sigv4.SignedRequest(**{**signed.__dict__, "body": b'{"a": 2}'})
    with pytest.raises(sigv4.InvalidSignature):
        check(tampered)


def test_wrong_secret_is_detected():
    with pytest.raises(sigv4.InvalidSignature):
        check(botocore_signed("GET", "http://localhost/datastore"), secret="x" * 40)


def test_host_header_is_part_of_the_signature():
    signed = botocore_signed("GET", "http://localhost:8080/datastore")
    moved = sigv4.SignedRequest(**{**signed.__dict__, "headers": {**signed.headers, "host": "127.0.0.1:8080"}})
    with pytest.raises(sigv4.InvalidSignature):
        check(moved)


def test_declared_payload_hash_must_match():
    signed = botocore_signed("POST", "http://localhost/datastore", b"{}")
    lying = sigv4.SignedRequest(**{**signed.__dict__, "headers": {**signed.headers, "x-amz-content-sha256": "0" * 64}})
    with pytest.raises(sigv4.InvalidSignature):
        check(lying)


@pytest.mark.parametrize(
    "header, error",
    [
        (None, sigv4.MissingAuthenticationToken),
        ("Bearer abc", sigv4.IncompleteSignature),
        ("AWS4-HMAC-SHA256 Credential=AKID/20240501/us-east-1/medical-imaging/aws4_request, "
         "SignedHeaders=content-type, Signature=" + "0" * 64, sigv4.IncompleteSignature),
    ],
)
def test_authorization_header_shape(header, error):
    with pytest.raises(error):
        sigv4.parse_authorization({} if header is None else {"authorization": header})
