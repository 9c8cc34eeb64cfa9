"""The HTTP side of every API operation, in one place.

`dispatch` takes a request routed to a path and picks the operation by method; the rest of the call is
`imaging.aws.signed.signed_call`'s (authentication, throttling, the error envelope, metrics, the audit trail), with
this module's step in the middle: parse and validate the input from the botocore model, authorize the action on the
resources the operation names, run the handler and serialize its plain-data result. Handlers are only the happy
path, and nothing a client sends yields an HTML page or a 500 for a client fault.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from django.http import HttpRequest, HttpResponse

from imaging.api.protocol import operation_model, parse_request, to_wire
from imaging.aws.envelope import error_response
from imaging.aws.signed import SignedCall, signed_call, unknown_operation


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
    """Register `handler(call, **params)` as the implementation of a model operation; `call` is the SignedCall,
    authenticated and authorized."""

    def register(handler: Handler) -> Handler:
        operation_model(name)  # fails at import time for a misspelt operation name
        OPERATIONS[name] = Operation(name=name, handler=handler, resources=resources)
        return handler

    return register


def _success(result: Any) -> HttpResponse:
    if isinstance(result, BlobResult):
        response = HttpResponse(result.body, status=200)
        for name, value in result.headers.items():
            response[name] = value
    else:
        response = HttpResponse(json.dumps(to_wire(result or {})), status=200, content_type="application/json")
    return response  # signed_call adds x-amzn-RequestId


def dispatch(request: HttpRequest, routes: dict[str, str], labels: dict[str, str]) -> HttpResponse:
    operation_name = routes.get(request.method or "")
    if operation_name is None:
        return unknown_operation(request)
    model = operation_model(operation_name)

    def run(call: SignedCall) -> HttpResponse:
        params = parse_request(model, labels=labels, query=request.GET, headers=request.headers, body=call.body)
        call.parameters = params
        registered = OPERATIONS.get(operation_name)
        if registered is None:
            return error_response("UnknownOperationException", 404, f"{operation_name} is not available",
                                  call.request_id)
        call.authorize(registered.resources(params))
        result = registered.handler(call, **params)
        call.audit_response = None if isinstance(result, BlobResult) else result
        return _success(result)

    return signed_call(request, operation_name=operation_name, step=run, parameters=labels, labels=labels,
                       path_template=model.http["requestUri"].split("?", 1)[0])
