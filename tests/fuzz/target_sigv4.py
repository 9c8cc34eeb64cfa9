"""Fuzz target: SigV4 header parsing and verification (imaging.aws.sigv4).

Property: whatever the Authorization, X-Amz-Date and other headers, path, query and body, parsing and verifying
a request either succeeds or raises a SignatureError subclass (an AWS error envelope: 400 or 403), never any
other exception (a 500).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from imaging.aws import sigv4

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
GOOD = ("AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/20240501/us-east-1/medical-imaging/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)


def check_request(headers: dict[str, str], *, method: str = "GET", raw_path: str = "/datastore",
                  query: str = "", body: bytes = b"") -> None:
    try:
        auth = sigv4.parse_authorization(headers)
        request = sigv4.SignedRequest(method=method, raw_path=raw_path, query_string=query, headers=headers,
                                      body=body)
        sigv4.verify(request, auth, "secret", regions=["us-east-1"], max_skew=300, now=NOW,
                     allow_unsigned_payload=True)
    except sigv4.SignatureError as e:
        assert e.message and e.error_type and e.status in (400, 403)


def one_input(data: bytes) -> None:
    """The bytes split on NUL into: Authorization, X-Amz-Date, another header's value, path, query, method."""
    text = data.decode("latin-1")  # headers arrive as latin-1 text under WSGI and ASGI alike
    parts = (text.split("\x00") + [""] * 6)[:6]
    authorization, amz_date, other, path, query, method = parts
    headers = {"authorization": authorization, "x-amz-date": amz_date, "host": other or "127.0.0.1:8000",
               "x-amz-content-sha256": other}
    check_request(headers, method=method or "GET", raw_path=path or "/", query=query, body=data)


def seed_inputs() -> Iterable[bytes]:
    yield "\x00".join([GOOD, "20240501T120000Z", "127.0.0.1:8000", "/datastore", "a=1&b=%20", "POST"]).encode()
    yield "\x00".join([GOOD.replace("host;", ""), "20240501T1200", "", "/tags/arn%3Aaws", "", "GET"]).encode()
    yield "\x00".join(["AWS4-HMAC-SHA256 Credential=a/b/c/d/e", "x"]).encode()
