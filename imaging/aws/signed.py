"""The one wrapper for a SigV4-signed route, shared by the HealthImaging API and the DICOMweb routes.

`signed_call` runs one call, in this order: a request id; the body, read within the body limit (a body over it is a
PayloadTooLarge); authentication into a Caller (imaging/aws/callers.py); throttling per operation; optionally the
authorization of the resources the route names; then the route's own step, which is only the happy path. Every
exception becomes a response in one place: a SignatureError its own AWS error, a domain error the row of
`imaging.aws.envelope.ERROR_TABLE`, anything else a 500 that is logged once. Afterwards each call, answered or
refused, is counted in the metrics and written to the audit trail.

A route may ask for its body spooled (`spooled_body`, STOW-RS): it then streams to a temporary file, hashed on the
way for the SigV4 payload hash, instead of being read into memory (SPEC 12.1, last bullet).

`signed_route` is the same as a view decorator for a route with one operation (GetDICOMInstance); the API's
dispatcher, which picks the operation by method, calls `signed_call` itself.

Authentication is SigV4 against an active access key everywhere. A route that opts in with `bearer=True` (the
DICOMweb routes: every signed_route with allow_unsigned_payload=True does, unless it says otherwise) also accepts
`Authorization: Bearer <token>` (a personal access token, an OIDC JWT, or a JWT for the data store's authorizer,
SPEC 12.6) and, for GET and HEAD without an Authorization header, the viewer's session cookie from the server's own
origin. The API never opts in: a bearer token there is what any malformed Authorization header is, a SigV4 error.
A refused bearer token is a 401 in the JSON envelope with `WWW-Authenticate: Bearer error="invalid_token"`.

This module knows no route and no operation model: it must not import imaging.api or imaging.dicomweb.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from imaging import errors, throttling
from imaging.aws import sigv4
from imaging.aws.callers import Caller, bearer_caller, caller_authorize, caller_for_key, session_caller
from imaging.aws.envelope import domain_error_response, error_response
from imaging.body_limits import BEARER_CHECKED
from imaging.metrics import record_call
from imaging.models import AccessKey
from imaging.services.accesskeys import accesskey_for_signing, accesskey_touch
from imaging.services.audit import audit_record, client_ip

logger = logging.getLogger(__name__)


@dataclass
class SignedCall:
    """One signed call as it goes. The wrapper fills in the caller (and `key`, for SigV4) and the principal; the
    route sets `parameters` (what the audit trail records as requestParameters, and where it finds the data store,
    image set and study) and `audit_response` (the responseElements; None for bodies that are data, not a reply)."""

    request: HttpRequest
    request_id: str
    operation_name: str
    body: bytes = b""
    caller: Caller | None = None
    # A route with `spooled_body` gets its body here instead of in `body`: an anonymous temporary file, rewound.
    body_file: BinaryIO | None = None
    key: AccessKey | None = None
    principal: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    audit_response: Any = None

    # A data store's grant, looked up once per call however many of its resources are authorized.
    granted: dict[str, bool] = field(default_factory=dict)

    @property
    def user(self) -> Any:
        """The user the call acts for (None for a data store authorizer's role, or before authentication)."""
        return self.caller.user if self.caller else None

    def authorize(self, resources: list[str], *, operation_name: str | None = None) -> str:
        """Authorize this call's caller for `operation_name` (this call's operation by default) on `resources`."""
        assert self.caller is not None, "authorize runs after authentication"
        self.principal = caller_authorize(self.caller, operation_name=operation_name or self.operation_name,
                                          resources=resources, granted=self.granted)
        return self.principal


Step = Callable[[SignedCall], HttpResponse]
Resources = Callable[[SignedCall], list[str]]


def _lower_headers(request: HttpRequest) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def _raw_path(request: HttpRequest, path_template: str | None, labels: dict[str, str]) -> str:
    """The path exactly as the client sent it, which is what the client signed."""
    scope = getattr(request, "scope", None)
    if scope and scope.get("raw_path"):
        return scope["raw_path"].decode("latin-1").split("?", 1)[0]
    for key in ("RAW_URI", "REQUEST_URI"):
        if request.META.get(key):
            return request.META[key].split("?", 1)[0]
    if path_template is None:
        return quote(request.path, safe="/~")
    # No raw path from the server: rebuild it the way botocore encodes route labels.
    return re.sub(r"\{(\w+)\}", lambda m: quote(labels.get(m.group(1), ""), safe="-_.~"), path_template)


def authenticate(
    request: HttpRequest, *, body: bytes, path_template: str | None = None, labels: dict[str, str] | None = None,
    allow_unsigned_payload: bool = False, body_sha256: str | None = None,
) -> AccessKey:
    """The active access key that signed `request`, or a SignatureError. `path_template` (the operation's
    requestUri) rebuilds the signed path where the server does not hand over the raw one."""
    headers = _lower_headers(request)
    auth = sigv4.parse_authorization(headers)
    found = accesskey_for_signing(access_key_id=auth.access_key_id)
    if found is None:
        raise sigv4.UnrecognizedClient("The security token included in the request is invalid.")
    key, secret = found
    signed = sigv4.SignedRequest(
        method=request.method or "GET",
        raw_path=_raw_path(request, path_template, labels or {}),
        query_string=request.META.get("QUERY_STRING", ""),
        headers=headers,
        body=body,
        body_sha256=body_sha256,
    )
    sigv4.verify(
        signed,
        auth,
        secret,
        regions=[settings.APERTURE_REGION, *settings.APERTURE_ACCEPTED_REGIONS],
        max_skew=settings.APERTURE_SIGV4_MAX_SKEW,
        allow_unsigned_payload=allow_unsigned_payload,
    )
    accesskey_touch(key=key)
    return key


def authorize(key: AccessKey, *, operation_name: str, resources: list[str],
              granted: dict[str, bool] | None = None) -> str:
    """The key's policy must allow the action on every resource, and the key's user must be granted each data
    store named (imaging.aws.callers.caller_authorize). Returns the principal's ARN; raises AccessDenied naming
    the first resource refused."""
    return caller_authorize(caller_for_key(key), operation_name=operation_name, resources=resources, granted=granted)


_BEARER = re.compile(r"Bearer[ \t]+(\S+)[ \t]*", re.IGNORECASE)


def authenticate_caller(request: HttpRequest, *, body: bytes, operation_name: str, path_template: str | None,
                        labels: dict[str, str], allow_unsigned_payload: bool, bearer: bool,
                        body_sha256: str | None = None) -> Caller:
    """The caller of `request`: SigV4 always; with `bearer`, also a bearer token or the session (module docstring)."""
    if bearer:
        match = _BEARER.fullmatch(request.headers.get("Authorization", ""))
        if match is not None:
            datastore_id = labels.get("datastoreId", "")
            checked = getattr(request, "scope", {}).get(BEARER_CHECKED)
            if (checked is not None and checked.token == match.group(1) and checked.datastore_id == datastore_id
                    and checked.operation_name == operation_name):
                return checked.caller  # checked by the body limit moments ago, before the body (STOW-RS)
            return bearer_caller(match.group(1), datastore_id=datastore_id, operation_name=operation_name)
        session = session_caller(request)
        if session is not None:
            return session
    key = authenticate(request, body=body, path_template=path_template, labels=labels,
                       allow_unsigned_payload=allow_unsigned_payload, body_sha256=body_sha256)
    return caller_for_key(key)


def _read_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig as e:
        raise errors.PayloadTooLarge(
            f"The request body exceeds the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
        ) from e


SPOOL_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class SpooledBody:
    file: BinaryIO
    size: int
    sha256: str


def spool_body(request: HttpRequest, *, limit: int) -> SpooledBody:
    """The request body streamed into an anonymous temporary file under the data directory (removed when closed,
    or by the system if the process dies) and hashed on the way, for SigV4's payload hash (SPEC 12.1): a body of a
    gigabyte (STOW-RS) is never held in memory. One past `limit` bytes is a PayloadTooLarge; the body-limit
    middleware refuses most such bodies before they arrive, this holds where no middleware runs (WSGI)."""
    folder = Path(settings.DATA_DIR) / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    spooled = tempfile.TemporaryFile(dir=folder)
    digest = hashlib.sha256()
    size = 0
    try:
        while chunk := request.read(SPOOL_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise errors.PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes for this route")
            digest.update(chunk)
            spooled.write(chunk)
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return SpooledBody(file=spooled, size=size, sha256=digest.hexdigest())


def _answer(call: SignedCall, step: Step, *, resources: Resources | None, path_template: str | None,
            labels: dict[str, str], allow_unsigned_payload: bool, bearer: bool,
            spooled_body: bool = False) -> HttpResponse:
    """The call's response: the step's on success, else the error table's. The only place a signed route's
    exceptions become responses."""
    try:
        body_sha256 = None
        if spooled_body:
            # STOW-RS is the one route that spools: its own limit applies.
            spooled = spool_body(call.request, limit=settings.APERTURE_MAX_STOW_BYTES)
            call.body_file, body_sha256 = spooled.file, spooled.sha256
        else:
            call.body = _read_body(call.request)
        call.caller = authenticate_caller(call.request, body=call.body, operation_name=call.operation_name,
                                          path_template=path_template, labels=labels,
                                          allow_unsigned_payload=allow_unsigned_payload, bearer=bearer,
                                          body_sha256=body_sha256)
        call.key = call.caller.key
        if not throttling.allow(call.operation_name):
            raise errors.Throttled(f"Rate exceeded for {call.operation_name}")
        if resources is not None:
            call.authorize(resources(call))
        response = step(call)
    except sigv4.SignatureError as e:
        return error_response(e.error_type, e.status, e.message, call.request_id)
    except errors.InvalidToken as e:
        response = domain_error_response(e, call.request_id)
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    except errors.ApertureError as e:
        return domain_error_response(e, call.request_id)
    except Exception:
        logger.exception("unexpected failure in %s (request %s)", call.operation_name, call.request_id)
        return error_response("InternalServerException", 500, f"Internal server error (request {call.request_id})",
                              call.request_id)
    response["x-amzn-RequestId"] = call.request_id
    return response


def signed_call(request: HttpRequest, *, operation_name: str, step: Step, parameters: dict[str, Any] | None = None,
                labels: dict[str, str] | None = None, resources: Resources | None = None,
                path_template: str | None = None, allow_unsigned_payload: bool = False,
                bearer: bool = False, spooled_body: bool = False) -> HttpResponse:
    """Answer one signed call of `operation_name` (see the module docstring). `parameters` is what the audit trail
    records if the call fails before the step sets its own; `resources`, if given, are authorized before the step;
    `bearer` also accepts bearer tokens and the session (DICOMweb routes only). With `spooled_body` the body goes to
    a temporary file (`call.body_file`, see spool_body), closed afterwards."""
    call = SignedCall(request=request, request_id=str(uuid.uuid4()), operation_name=operation_name,
                      parameters=dict(parameters or {}))
    started = time.perf_counter()
    try:
        response = _answer(call, step, resources=resources, path_template=path_template, labels=labels or {},
                           allow_unsigned_payload=allow_unsigned_payload, bearer=bearer, spooled_body=spooled_body)
    finally:
        if call.body_file is not None:
            call.body_file.close()
    record_call(operation=operation_name, datastore_id=str(call.parameters.get("datastoreId", ""))[:32],
                status_code=response.status_code, error_type=response.get("x-amzn-ErrorType", ""),
                seconds=time.perf_counter() - started)
    _audit(call, response)
    return response


def signed_route(*, operation_name: str, method: str = "GET", parameters: Callable[..., dict[str, Any]],
                 resources: Resources | None = None, allow_unsigned_payload: bool = False,
                 spooled_body: bool = False, bearer: bool | None = None
                 ) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A view decorator for a signed route with one operation. The view is called as `view(call, **labels)` and
    returns its success response; `parameters(request, **labels)` gives the audit parameters. Another method
    than `method` is an unknown operation, neither counted nor audited. `bearer` (by default: the same as
    `allow_unsigned_payload`, which only DICOMweb routes set) accepts bearer tokens and the session too."""
    accepts_bearer = allow_unsigned_payload if bearer is None else bearer

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request: HttpRequest, **labels: str) -> HttpResponse:
            if request.method != method:
                return unknown_operation(request)
            return signed_call(
                request, operation_name=operation_name, step=lambda call: view(call, **labels),
                parameters=parameters(request, **labels), labels=labels, resources=resources,
                allow_unsigned_payload=allow_unsigned_payload, bearer=accepts_bearer, spooled_body=spooled_body,
            )

        return wrapped

    return decorate


def _audit(call: SignedCall, response: HttpResponse) -> None:
    caller, params = call.caller, call.parameters
    error = response.get("x-amzn-ErrorType", "") if response.status_code >= 300 else ""
    message = ""
    if error:
        try:
            message = json.loads(response.content).get("message", "")
        except ValueError:
            message = ""
    audit_record(
        event_name=call.operation_name, user=caller.user if caller else None, request_id=call.request_id,
        principal_arn=caller.principal_arn if caller else "",
        access_key_id=caller.credential_id if caller else _claimed_key_id(call.request),
        identity_type=caller.identity_type if caller else None,
        source_ip=client_ip(call.request.META), user_agent=call.request.headers.get("User-Agent", ""),
        datastore_id=str(params.get("datastoreId", "")),
        image_set_id=str(params.get("imageSetId") or params.get("sourceImageSetId") or ""),
        study_uid=str(params.get("study") or "")[:64],
        parameters=params, response=call.audit_response,
        status_code=response.status_code, error_code=error, error_message=message,
    )


def _claimed_key_id(request: HttpRequest) -> str:
    """The key or token id a refused call claimed; never any part of a token's secret, nor of a JWT."""
    authorization = request.headers.get("Authorization", "")
    match = re.search(r"Credential=([A-Z0-9]{1,20})/", authorization) or re.fullmatch(
        r"Bearer[ \t]+(apt_[a-z0-9]{12})_.*", authorization, re.IGNORECASE | re.DOTALL)
    return match.group(1) if match else ""


def unknown_operation(request: HttpRequest, *, request_id: str | None = None) -> HttpResponse:
    return error_response(
        "UnknownOperationException",
        404,
        f"No operation matches {request.method} on this path",
        request_id or str(uuid.uuid4()),
    )
