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
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from imaging import errors
from imaging.api import sigv4
from imaging.api.errors import domain_error_response, error_response
from imaging.api.protocol import operation_model, parse_request, to_wire
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


def authorize(key: AccessKey, *, operation_name: str, resources: list[str]) -> str:
    principal = principal_arn(key)
    action = f"medical-imaging:{operation_name}"
    document = accesskey_policy_document(key)
    for resource in resources:
        if not is_allowed(document, action=action, resources=[resource]):
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
    try:
        try:
            body = request.body
        except RequestDataTooBig as e:
            raise errors.ValidationFailed(
                f"The request body exceeds the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
            ) from e
        key = authenticate(request, body=body, operation_name=operation_name, labels=labels)
        model = operation_model(operation_name)
        params = parse_request(model, labels=labels, query=request.GET, headers=request.headers, body=body)
        registered = OPERATIONS.get(operation_name)
        if registered is None:
            return error_response("UnknownOperationException", 404, f"{operation_name} is not available", request_id)
        principal = authorize(key, operation_name=operation_name, resources=registered.resources(params))
        context = ApiContext(
            request=request, request_id=request_id, operation=operation_name, key=key, principal=principal
        )
        return _success(registered.handler(context, **params), request_id)
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
