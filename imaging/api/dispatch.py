"""The HTTP side of every API operation, in one place.

`dispatch` takes a request routed to a path, picks the operation by method, then: authenticates (SigV4 against
an active access key), parses and validates the input from the botocore model, authorizes the action on the
resources the operation names, runs the handler and serializes its plain-data result. Every exception becomes an
AWS error envelope here, so handlers are only the happy path and nothing a client sends yields an HTML page or a
500 for a client fault.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from imaging import errors, throttling
from imaging.api import sigv4
from imaging.api.errors import domain_error_response, error_response
from imaging.api.protocol import operation_model, parse_request, to_wire
from imaging.metrics import record_call
from imaging.models import AccessKey
from imaging.policies import is_allowed
from imaging.services.accesskeys import (
    accesskey_for_signing,
    accesskey_policy_document,
    accesskey_touch,
    principal_arn,
)

logger = logging.getLogger(__name__)


@dataclass
class ApiContext:
    request: HttpRequest
    request_id: str
    operation: str
    key: AccessKey
    principal: str


@dataclass
class BlobResult:
    """A handler result whose body is raw bytes (GetImageSetMetadata, GetImageFrame)."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[..., Any]
ResourcesOf = Callable[[dict[str, Any]], list[str]]


@dataclass(frozen=True)
class Operation:
    name: str
    handler: Handler
    resources: ResourcesOf


OPERATIONS: dict[str, Operation] = {}


def operation(name: str, *, resources: ResourcesOf) -> Callable[[Handler], Handler]:
    """Register `handler(ctx, **params)` as the implementation of a model operation."""

    def register(handler: Handler) -> Handler:
        operation_model(name)  # fails at import time for a misspelt operation name
        OPERATIONS[name] = Operation(name=name, handler=handler, resources=resources)
        return handler

    return register


def _lower_headers(request: HttpRequest) -> dict[str, str]:
    headers = {name.lower(): value for name, value in request.headers.items()}
    return headers


def _raw_path(request: HttpRequest, operation_name: str | None, labels: dict[str, str]) -> str:
    """The path exactly as the client sent it, which is what the client signed."""
    scope = getattr(request, "scope", None)
    if scope and scope.get("raw_path"):
        return scope["raw_path"].decode("latin-1").split("?", 1)[0]
    for key in ("RAW_URI", "REQUEST_URI"):
        if request.META.get(key):
            return request.META[key].split("?", 1)[0]
    if operation_name is None:
        return quote(request.path, safe="/~")
    # No raw path from the server: rebuild it the way botocore encodes route labels.
    template = operation_model(operation_name).http["requestUri"].split("?", 1)[0]
    return re.sub(r"\{(\w+)\}", lambda m: quote(labels.get(m.group(1), ""), safe="-_.~"), template)


def authenticate(
    request: HttpRequest, *, body: bytes, operation_name: str | None, labels: dict[str, str],
    allow_unsigned_payload: bool = False,
) -> AccessKey:
    headers = _lower_headers(request)
    auth = sigv4.parse_authorization(headers)
    found = accesskey_for_signing(access_key_id=auth.access_key_id)
    if found is None:
        raise sigv4.UnrecognizedClient("The security token included in the request is invalid.")
    key, secret = found
    signed = sigv4.SignedRequest(
        method=request.method or "GET",
        raw_path=_raw_path(request, operation_name, labels),
        query_string=request.META.get("QUERY_STRING", ""),
        headers=headers,
        body=body,
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


_DATASTORE_IN_ARN = re.compile(r":datastore/([0-9a-z]{32})")


def granted_datastores(key: AccessKey) -> set[str] | None:
    """The data stores a key's user was granted, or None for administrators (no limit)."""
    if key.user.is_superuser:
        return None
    return set(key.user.datastore_grants.values_list("datastore_id", flat=True))


def authorize(key: AccessKey, *, operation_name: str, resources: list[str]) -> str:
    """The key's policy must allow the action on every resource, and (for users who are not administrators) each
    data store named must be one granted to the key's user: grants bind the API as they bind the viewer."""
    principal = principal_arn(key)
    action = f"medical-imaging:{operation_name}"
    document = accesskey_policy_document(key)
    granted = granted_datastores(key)
    for resource in resources:
        denied = not is_allowed(document, action=action, resources=[resource])
        if not denied and granted is not None:
            match = _DATASTORE_IN_ARN.search(resource)
            denied = (match is None and operation_name == "CreateDatastore") or (
                match is not None and match.group(1) not in granted)
        if denied:
            raise errors.AccessDenied(f"User: {principal} is not authorized to perform: {action} on resource: {resource}")
    return principal


def _success(result: Any, request_id: str) -> HttpResponse:
    if isinstance(result, BlobResult):
        response = HttpResponse(result.body, status=200)
        for name, value in result.headers.items():
            response[name] = value
    else:
        response = HttpResponse(json.dumps(to_wire(result or {})), status=200, content_type="application/json")
    response["x-amzn-RequestId"] = request_id
    return response


def dispatch(request: HttpRequest, routes: dict[str, str], labels: dict[str, str]) -> HttpResponse:
    request_id = str(uuid.uuid4())
    operation_name = routes.get(request.method or "")
    if operation_name is None:
        return unknown_operation(request, request_id=request_id)
    audit: dict[str, Any] = {"key": None, "params": dict(labels), "result": None}
    started = time.perf_counter()
    response = _dispatch(request, operation_name, labels, request_id, audit)
    record_call(operation=operation_name, datastore_id=str(audit["params"].get("datastoreId", ""))[:32],
                status_code=response.status_code, error_type=response.get("x-amzn-ErrorType", ""),
                seconds=time.perf_counter() - started)
    _audit(request, operation_name, request_id, audit, response)
    return response


def _audit(request: HttpRequest, operation_name: str, request_id: str, audit: dict[str, Any],
           response: HttpResponse) -> None:
    from imaging.services.audit import audit_record, client_ip

    key = audit["key"]
    params = audit["params"]
    error = response.get("x-amzn-ErrorType", "") if response.status_code >= 300 else ""
    message = ""
    if error:
        try:
            message = json.loads(response.content).get("message", "")
        except ValueError:
            message = ""
    audit_record(
        event_name=operation_name, user=key.user if key else None, request_id=request_id,
        principal_arn=principal_arn(key) if key else "",
        access_key_id=key.access_key_id if key else _claimed_key_id(request),
        source_ip=client_ip(request.META), user_agent=request.headers.get("User-Agent", ""),
        datastore_id=str(params.get("datastoreId", "")), image_set_id=str(params.get("imageSetId") or
                                                                         params.get("sourceImageSetId") or ""),
        parameters=params, response=audit["result"] if not isinstance(audit["result"], BlobResult) else None,
        status_code=response.status_code, error_code=error, error_message=message,
    )


def _claimed_key_id(request: HttpRequest) -> str:
    match = re.search(r"Credential=([A-Z0-9]{1,20})/", request.headers.get("Authorization", ""))
    return match.group(1) if match else ""


def _dispatch(request: HttpRequest, operation_name: str, labels: dict[str, str], request_id: str,
              audit: dict[str, Any]) -> HttpResponse:
    try:
        try:
            body = request.body
        except RequestDataTooBig as e:
            raise errors.PayloadTooLarge(
                f"The request body exceeds the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
            ) from e
        key = authenticate(request, body=body, operation_name=operation_name, labels=labels)
        audit["key"] = key
        if not throttling.allow(operation_name):
            raise errors.Throttled(f"Rate exceeded for {operation_name}")
        model = operation_model(operation_name)
        params = parse_request(model, labels=labels, query=request.GET, headers=request.headers, body=body)
        audit["params"] = params
        registered = OPERATIONS.get(operation_name)
        if registered is None:
            return error_response("UnknownOperationException", 404, f"{operation_name} is not available", request_id)
        principal = authorize(key, operation_name=operation_name, resources=registered.resources(params))
        context = ApiContext(
            request=request, request_id=request_id, operation=operation_name, key=key, principal=principal
        )
        result = registered.handler(context, **params)
        audit["result"] = result
        return _success(result, request_id)
    except sigv4.SignatureError as e:
        return error_response(e.error_type, e.status, e.message, request_id)
    except errors.ApertureError as e:
        return domain_error_response(e, request_id)
    except Exception:
        logger.exception("unexpected failure in %s (request %s)", operation_name, request_id)
        return error_response("InternalServerException", 500, f"Internal server error (request {request_id})", request_id)


def unknown_operation(request: HttpRequest, *, request_id: str | None = None) -> HttpResponse:
    return error_response(
        "UnknownOperationException",
        404,
        f"No operation matches {request.method} on this path",
        request_id or str(uuid.uuid4()),
    )
