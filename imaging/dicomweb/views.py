"""DICOMweb routes under /datastore/{id} (SPEC 11). Served so far: GetDICOMInstance (11.4).

Authentication is SigV4 as for the API (UNSIGNED-PAYLOAD allowed, as for every DICOMweb route); errors use the
same JSON error envelope.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from imaging import errors
from imaging.api import sigv4
from imaging.api.dispatch import authenticate, authorize, unknown_operation
from imaging.api.errors import domain_error_response, error_response
from imaging.metrics import record_call
from imaging.models import datastore_arn
from imaging.services.accesskeys import principal_arn
from imaging.services.audit import audit_record, client_ip
from imaging.services.instances import instance_image_set, instance_p10

logger = logging.getLogger(__name__)


@csrf_exempt
def get_instance(request: HttpRequest, datastoreId: str, study: str, series: str, sop: str) -> HttpResponse:
    request_id = str(uuid.uuid4())
    if request.method != "GET":
        return unknown_operation(request, request_id=request_id)
    started = time.perf_counter()
    response, key = _get_instance(request, request_id, datastoreId, study, series, sop)
    error = response.get("x-amzn-ErrorType", "") if response.status_code >= 300 else ""
    record_call(operation="GetDICOMInstance", datastore_id=datastoreId, status_code=response.status_code,
                error_type=error, seconds=time.perf_counter() - started)
    audit_record(event_name="GetDICOMInstance", event_type="AwsApiCall", category="Data", read_only=True,
                 user=key.user if key else None, request_id=request_id, principal_arn=principal_arn(key) if key else "",
                 access_key_id=key.access_key_id if key else "", source_ip=client_ip(request.META),
                 user_agent=request.headers.get("User-Agent", ""), datastore_id=datastoreId,
                 image_set_id=request.GET.get("imageSetId", ""), study_uid=study[:64],
                 parameters={"datastoreId": datastoreId, "study": study, "series": series, "sop": sop,
                             "imageSetId": request.GET.get("imageSetId")},
                 status_code=response.status_code, error_code=error)
    return response


def _get_instance(request: HttpRequest, request_id: str, datastoreId: str, study: str, series: str, sop: str):
    key = None
    try:
        key = authenticate(request, body=request.body, operation_name=None, labels={}, allow_unsigned_payload=True)
        authorize(key, operation_name="GetDICOMInstance", resources=[datastore_arn(datastoreId)])
        image_set = instance_image_set(datastore_id=datastoreId, study_uid=study, series_uid=series,
                                       image_set_id=request.GET.get("imageSetId"))
        # The instance is read from one image set: a policy that denies that image set denies the instance too.
        authorize(key, operation_name="GetDICOMInstance", resources=[image_set.arn])
        streamed, syntax = instance_p10(image_set=image_set, study_uid=study, series_uid=series, sop_uid=sop,
                                        accept=request.headers.get("Accept"))
    except sigv4.SignatureError as e:
        return error_response(e.error_type, e.status, e.message, request_id), key
    except errors.ApertureError as e:
        return domain_error_response(e, request_id), key
    except Exception:
        logger.exception("GetDICOMInstance failed (request %s)", request_id)
        return error_response("InternalServerException", 500, "Internal server error", request_id), key
    response = StreamingHttpResponse(_sent_from_threads(streamed.parts, request_id),
                                     content_type=f"application/dicom; transfer-syntax={syntax}")
    response["Content-Length"] = str(streamed.length)
    response["x-amzn-RequestId"] = request_id
    return response, key


async def _sent_from_threads(parts: Iterator[bytes], request_id: str) -> AsyncIterator[bytes]:
    """The pieces of a file, each produced in a worker thread (blob reads and frame decodes block) and sent before
    the next is made. An async iterator: Django would otherwise collect a synchronous one into a list before
    sending anything. A failure once the status line is out can only cut the response short (Content-Length
    tells the client), so it is logged here."""
    finished = object()
    while True:
        try:
            part = await sync_to_async(next, thread_sensitive=False)(parts, finished)
        except Exception:
            logger.exception("GetDICOMInstance failed while streaming (request %s)", request_id)
            raise
        if part is finished:
            return
        yield part
