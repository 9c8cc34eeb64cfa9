"""DICOMweb routes under /datastore/{id} (SPEC 11): GetDICOMInstance (11.4) and the QIDO-RS searches (11.2);
the other WADO-RS retrievals are in imaging.dicomweb.wado.

Authentication is SigV4 as for the API (UNSIGNED-PAYLOAD allowed, as for every DICOMweb route); errors use the
same JSON error envelope. Both come from imaging.aws.signed, so a view here is only the happy path.
"""
from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from imaging.aws.signed import SignedCall, signed_route
from imaging.dicom.multipart import Part, multipart_content_type, multipart_length, multipart_pieces, new_boundary
from imaging.dicom.rebuild import StreamedP10
from imaging.errors import NotAcceptable
from imaging.models import datastore_arn
from imaging.services.instances import instance_image_set, instance_p10
from imaging.services.wado import wants_multipart
from imaging.services.qido import (
    ADDITIONAL_RESULTS_WARNING,
    Search,
    SearchResult,
    instances_search,
    search_parse,
    series_search,
    studies_search,
)

logger = logging.getLogger(__name__)


def _instance_parameters(request: HttpRequest, *, datastoreId: str, study: str, series: str, sop: str
                         ) -> dict[str, Any]:
    return {"datastoreId": datastoreId, "study": study, "series": series, "sop": sop,
            "imageSetId": request.GET.get("imageSetId")}


@signed_route(operation_name="GetDICOMInstance", parameters=_instance_parameters, allow_unsigned_payload=True,
              resources=lambda call: [datastore_arn(call.parameters["datastoreId"])])
def get_instance(call: SignedCall, *, datastoreId: str, study: str, series: str, sop: str) -> HttpResponse:
    request = call.request
    image_set = instance_image_set(datastore_id=datastoreId, study_uid=study, series_uid=series,
                                   image_set_id=request.GET.get("imageSetId"))
    # The instance is read from one image set: a policy that denies that image set denies the instance too.
    call.authorize([image_set.arn])
    streamed, syntax = instance_p10(image_set=image_set, study_uid=study, series_uid=series, sop_uid=sop,
                                    accept=request.headers.get("Accept"))
    if wants_multipart(request.headers.get("Accept")):
        return one_part_multipart(call, streamed, syntax)
    response = StreamingHttpResponse(_sent_from_threads(streamed.parts, call.request_id),
                                     content_type=f"application/dicom; transfer-syntax={syntax}")
    response["Content-Length"] = str(streamed.length)
    return response


async def _sent_from_threads(parts: Iterator[bytes], request_id: str, operation_name: str = "GetDICOMInstance"
                             ) -> AsyncIterator[bytes]:
    """The pieces of a file, each produced in a worker thread (blob reads and frame decodes block) and sent before
    the next is made. An async iterator: Django would otherwise collect a synchronous one into a list before
    sending anything. A failure once the status line is out can only cut the response short (Content-Length
    tells the client), so it is logged here."""
    finished = object()
    while True:
        try:
            part = await sync_to_async(next, thread_sensitive=False)(parts, finished)
        except Exception:
            logger.exception("%s failed while streaming (request %s)", operation_name, request_id)
            raise
        if part is finished:
            return
        yield part


def one_part_multipart(call: SignedCall, streamed: StreamedP10, syntax: str) -> HttpResponse:
    """The instance as a multipart/related body of one application/dicom part (SPEC 11.3, for strict PS3.18
    clients), still streamed and with its length known."""
    boundary = new_boundary()
    part_type = f"application/dicom; transfer-syntax={syntax}"
    pieces = multipart_pieces([Part(part_type, streamed.parts)], boundary)
    response = StreamingHttpResponse(_sent_from_threads(pieces, call.request_id),
                                     content_type=multipart_content_type("application/dicom", boundary, syntax))
    response["Content-Length"] = str(multipart_length([(part_type, streamed.length)], boundary))
    return response


def _search_parameters(request: HttpRequest, *, datastoreId: str, study: str | None = None) -> dict[str, Any]:
    parameters: dict[str, Any] = {"datastoreId": datastoreId, "searchCriteria": request.GET.urlencode()[:1024]}
    if study is not None:
        parameters["study"] = study
    return parameters


def _search_response(call: SignedCall, result: SearchResult) -> HttpResponse:
    accept = call.request.headers.get("Accept")
    if accept and not any(media in accept for media in ("application/dicom+json", "application/json", "*/*")):
        raise NotAcceptable("QIDO-RS answers application/dicom+json only")
    response = HttpResponse(json.dumps(result.objects), content_type="application/dicom+json")
    if result.more:
        response["Warning"] = ADDITIONAL_RESULTS_WARNING
    return response


def _base_url(call: SignedCall, datastore_id: str) -> str:
    return call.request.build_absolute_uri(f"/datastore/{datastore_id}")


def _search(request: HttpRequest) -> Search:
    return search_parse(dict(request.GET.lists()))


@signed_route(operation_name="SearchDICOMStudies", parameters=_search_parameters, allow_unsigned_payload=True,
              resources=lambda call: [datastore_arn(call.parameters["datastoreId"])])
def search_studies(call: SignedCall, *, datastoreId: str) -> HttpResponse:
    result = studies_search(datastore_id=datastoreId, search=_search(call.request),
                            base_url=_base_url(call, datastoreId))
    return _search_response(call, result)


@signed_route(operation_name="SearchDICOMSeries", parameters=_search_parameters, allow_unsigned_payload=True,
              resources=lambda call: [datastore_arn(call.parameters["datastoreId"])])
def search_series(call: SignedCall, *, datastoreId: str, study: str | None = None) -> HttpResponse:
    result = series_search(datastore_id=datastoreId, search=_search(call.request),
                           base_url=_base_url(call, datastoreId), study_uid=study)
    return _search_response(call, result)


def _instance_search_parameters(request: HttpRequest, *, datastoreId: str, study: str | None = None,
                                series: str | None = None) -> dict[str, Any]:
    parameters = _search_parameters(request, datastoreId=datastoreId, study=study)
    if series is not None:
        parameters["series"] = series
    return parameters


@signed_route(operation_name="SearchDICOMInstances", parameters=_instance_search_parameters,
              allow_unsigned_payload=True, resources=lambda call: [datastore_arn(call.parameters["datastoreId"])])
def search_instances(call: SignedCall, *, datastoreId: str, study: str | None = None,
                     series: str | None = None) -> HttpResponse:
    result = instances_search(datastore_id=datastoreId, search=_search(call.request),
                              base_url=_base_url(call, datastoreId), study_uid=study, series_uid=series)
    return _search_response(call, result)
