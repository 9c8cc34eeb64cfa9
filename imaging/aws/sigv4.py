"""AWS Signature Version 4 verification for incoming requests (SPEC 12.1).

One function per step of the algorithm, as in botocore's SigV4Auth, but on the receiving side:
parse the Authorization header, build the canonical request from the request *as received* (raw path, Host
header, signed headers, payload hash), build the string to sign, derive the signing key and compare.
The canonical URI is the raw path percent-encoded once more (the non-S3 double-encoding rule), so
`/tags/arn%3Aaws...` is canonicalized as `/tags/arn%253Aaws...`.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "medical-imaging"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

_AUTH_HEADER = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*"
)


class SignatureError(Exception):
    """An authentication failure; `error_type` and `status` are the AWS names for it."""

    error_type = "InvalidSignatureException"
    status = 403

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingAuthenticationToken(SignatureError):
    error_type = "MissingAuthenticationTokenException"


class IncompleteSignature(SignatureError):
    error_type = "IncompleteSignatureException"
    status = 400


class InvalidSignature(SignatureError):
    error_type = "InvalidSignatureException"


class UnrecognizedClient(SignatureError):
    error_type = "UnrecognizedClientException"


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request that a signature covers."""

    method: str
    raw_path: str
    query_string: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    # The body's SHA-256 (hex) when it was hashed as it streamed to disk (STOW-RS); `body` is then empty.
    body_sha256: str | None = None


@dataclass(frozen=True)
class Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def parse_authorization(headers: dict[str, str]) -> Authorization:
    raw = headers.get("authorization")
    if not raw:
        raise MissingAuthenticationToken("Missing Authentication Token")
    match = _AUTH_HEADER.fullmatch(raw.strip())
    if match is None:
        raise IncompleteSignature(
            "Authorization header requires Credential, SignedHeaders and Signature with algorithm AWS4-HMAC-SHA256"
        )
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise IncompleteSignature("Credential must have the form AKID/date/region/service/aws4_request")
    signed_headers = match["signed"].split(";")
    for required in ("host", "x-amz-date"):
        if required not in signed_headers:
            raise IncompleteSignature(f"SignedHeaders must include {required}")
    return Authorization(
        access_key_id=parts[0],
        date=parts[1],
        region=parts[2],
        service=parts[3],
        signed_headers=signed_headers,
        signature=match["signature"],
    )


_AMZ_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")


def request_time(headers: dict[str, str]) -> datetime:
    """X-Amz-Date as a UTC datetime (read on every signed call: a regular expression, not strptime, which took
    a tenth of a millisecond)."""
    match = _AMZ_DATE.fullmatch(headers.get("x-amz-date", ""))
    try:
        if match is None:
            raise ValueError("not a basic ISO 8601 timestamp")
        return datetime(*(int(part) for part in match.groups()), tzinfo=timezone.utc)
    except ValueError as e:
        raise IncompleteSignature("X-Amz-Date must be a timestamp like 20240101T000000Z") from e


def check_scope(auth: Authorization, *, when: datetime, regions: list[str], now: datetime, max_skew: int) -> None:
    if auth.service != SERVICE:
        raise InvalidSignature(f"Credential should be scoped to correct service: '{SERVICE}'")
    if auth.region not in regions:
        raise InvalidSignature(f"Credential should be scoped to a valid region, not '{auth.region}'")
    if auth.date != when.strftime("%Y%m%d"):
        raise InvalidSignature("Credential should be scoped to the date of X-Amz-Date")
    if abs(now - when) > timedelta(seconds=max_skew):
        raise InvalidSignature("Signature expired: the request time is too far from the server time")


def canonical_uri(raw_path: str) -> str:
    """Dot and empty segments removed as botocore does, then the encoded path quoted again keeping / and ~."""
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    path = "/" + "/".join(segments)
    if raw_path.endswith("/") and segments:
        path += "/"
    return quote(path, safe="/~")


def canonical_query(query_string: str) -> str:
    pairs = parse_qsl(query_string, keep_blank_values=True)
    encoded = sorted((quote(key, safe="-_.~"), quote(value, safe="-_.~")) for key, value in pairs)
    return "&".join(f"{key}={value}" for key, value in encoded)


def canonical_queries(query_string: str) -> list[str]:
    """The canonical query strings a valid signature may have been made over. First the SigV4 form (each key and
    value decoded, then encoded per RFC 3986); then, when it differs, the pairs exactly as sent, sorted: botocore
    signs a URL that already carries its query that way, and DICOMweb clients built on `requests` (dicomweb-client)
    send a space in a value as `+`, which the first form turns into `%20`. Both are made from the bytes received,
    so either binds the signature to the query the server acts on."""
    forms = [canonical_query(query_string)]
    if query_string:
        as_sent = "&".join(sorted(f"{key}={value}" for key, _, value in
                                  (pair.partition("=") for pair in query_string.split("&"))))
        if as_sent not in forms:
            forms.append(as_sent)
    return forms


def canonical_headers(headers: dict[str, str], signed: list[str]) -> str:
    lines = []
    for name in signed:
        if name not in headers:
            raise InvalidSignature(f"Signed header {name} is missing from the request")
        lines.append(f"{name}:{' '.join(headers[name].split())}")
    return "\n".join(lines) + "\n"


def payload_hash(request: SignedRequest, *, allow_unsigned: bool) -> str:
    actual = request.body_sha256 or hashlib.sha256(request.body).hexdigest()
    declared = request.headers.get("x-amz-content-sha256")
    if declared is None:
        return actual
    if declared == UNSIGNED_PAYLOAD and allow_unsigned:
        return declared
    if declared != actual:
        raise InvalidSignature("The provided X-Amz-Content-SHA256 does not match the request body")
    return actual


def canonical_request(request: SignedRequest, auth: Authorization, body_hash: str, query: str | None = None) -> str:
    """`query` is one of canonical_queries(); the SigV4 form when not given."""
    return "\n".join(
        [
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.query_string) if query is None else query,
            canonical_headers(request.headers, auth.signed_headers),
            ";".join(auth.signed_headers),
            body_hash,
        ]
    )


def string_to_sign(auth: Authorization, amz_date: str, canonical: str) -> str:
    scope = f"{auth.date}/{auth.region}/{auth.service}/aws4_request"
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def signing_key(secret: str, auth: Authorization) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), auth.date.encode(), hashlib.sha256).digest()
    for part in (auth.region, auth.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def verify(
    request: SignedRequest,
    auth: Authorization,
    secret: str,
    *,
    regions: list[str],
    max_skew: int,
    now: datetime | None = None,
    allow_unsigned_payload: bool = False,
) -> None:
    """Raise a SignatureError unless `request` carries a valid signature made with `secret`."""
    when = request_time(request.headers)
    check_scope(auth, when=when, regions=regions, now=now or datetime.now(timezone.utc), max_skew=max_skew)
    body_hash = payload_hash(request, allow_unsigned=allow_unsigned_payload)
    key = signing_key(secret, auth)
    matches = False
    for query in canonical_queries(request.query_string):
        canonical = canonical_request(request, auth, body_hash, query)
        to_sign = string_to_sign(auth, request.headers["x-amz-date"], canonical)
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        matches = hmac.compare_digest(expected, auth.signature) or matches
    if not matches:
        raise InvalidSignature(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
