"""The one table that turns domain exceptions into AWS rest-json error responses (SPEC 2.4), for the API, the
DICOMweb routes and the body-limit middleware. It builds responses only: which exceptions reach it, and what is
logged, is imaging/aws/signed.py's business."""
from __future__ import annotations

import json

from django.http import HttpResponse

from imaging import errors

# exception class -> (x-amzn-ErrorType, HTTP status)
ERROR_TABLE: dict[type[errors.ApertureError], tuple[str, int]] = {
    errors.ValidationFailed: ("ValidationException", 400),
    errors.BadRequest: ("BadRequestException", 400),
    errors.AccessDenied: ("AccessDeniedException", 403),
    errors.NotFound: ("ResourceNotFoundException", 404),
    errors.NotAcceptable: ("NotAcceptableException", 406),
    errors.UnsupportedMediaType: ("UnsupportedMediaTypeException", 415),
    errors.Conflict: ("ConflictException", 409),
    errors.QuotaExceeded: ("ServiceQuotaExceededException", 402),
    errors.Throttled: ("ThrottlingException", 429),
    # Not in the model: botocore surfaces it as a generic ClientError, as it does for 413s from AWS front ends.
    errors.PayloadTooLarge: ("RequestEntityTooLargeException", 413),
}


def error_response(error_type: str, status: int, message: str, request_id: str) -> HttpResponse:
    body = json.dumps({"__type": error_type, "message": message})
    response = HttpResponse(body, status=status, content_type="application/json")
    response["x-amzn-ErrorType"] = error_type
    response["x-amzn-RequestId"] = request_id
    return response


def domain_error_response(exc: errors.ApertureError, request_id: str) -> HttpResponse:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            error_type, status = ERROR_TABLE[cls]
            return error_response(error_type, status, exc.message, request_id)
    return error_response("InternalServerException", 500, "Internal server error", request_id)
