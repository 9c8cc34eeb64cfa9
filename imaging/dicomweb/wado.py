"""WADO-RS retrieve routes (SPEC 11.3) beside GetDICOMInstance (imaging.dicomweb.views): study and series as
multipart P10, metadata, frames and bulk data.

Each view is the happy path under `signed_route` (SigV4, throttling, the data store ARN authorized, errors in the
JSON envelope): it finds the image sets the request reads, authorizes the action on each of them too (a policy
that denies an image set denies what is read from it), and hands over to imaging.services.wado. Large bodies are
streamed from worker threads (`_sent_from_threads`), pieces coalesced so that small headers do not each cost a
thread hop.
"""
from __future__ import annotations

from typing import Any, Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from imaging.aws.signed import SignedCall, signed_route
from imaging.dicom.multipart import (
    Part,
    accept_entries,
    multipart_body,
    multipart_content_type,
    multipart_length,
    multipart_pieces,
    new_boundary,
)
from imaging.dicomweb.views import _sent_from_threads
from imaging.errors import NotAcceptable
from imaging.models import datastore_arn
from imaging.services.wado import (
    OCTET_STREAM,
    bulkdata_get,
    frames_get,
    instance_metadata_get,
    instances_p10_parts,
    series_image_set,
    series_metadata_get,
    study_image_sets,
    study_metadata_get,
)

DICOM_JSON = "application/dicom+json"
COALESCE_BYTES = 256 * 1024


def _parameters(request: HttpRequest, *, datastoreId: str, **labels: str) -> dict[str, Any]:
    parameters: dict[str, Any] = {"datastoreId": datastoreId, **labels}
    if request.GET.get("imageSetId"):
        parameters["imageSetId"] = request.GET["imageSetId"][:64]
    return parameters


def _datastore(call: SignedCall) -> list[str]:
    return [datastore_arn(call.parameters["datastoreId"])]


def _image_set_id(call: SignedCall) -> str | None:
    return call.request.GET.get("imageSetId") or None


def _base_url(call: SignedCall, datastore_id: str) -> str:
    """Absolute, from the Host the client used, so BulkDataURIs lead back to this server as the client sees it."""
    return call.request.build_absolute_uri(f"/datastore/{datastore_id}")


def _coalesced(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Pieces joined until they reach COALESCE_BYTES; a large piece (a frame) goes out as it is."""
    pending: list[bytes] = []
    size = 0
    for piece in pieces:
        if len(piece) >= COALESCE_BYTES:
            if pending:
                yield b"".join(pending)
                pending, size = [], 0
            yield piece
            continue
        pending.append(piece)
        size += len(piece)
        if size >= COALESCE_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _json_response(call: SignedCall, body: bytes) -> HttpResponse:
    entries = accept_entries(call.request.headers.get("Accept"))
    if entries and not any(entry.media_type in (DICOM_JSON, "application/json", "*/*", "application/*")
                           or entry.part_type == DICOM_JSON for entry in entries):
        raise NotAcceptable("Metadata is served as application/dicom+json only")
    return HttpResponse(body, content_type=DICOM_JSON)


def _p10_response(call: SignedCall, parts: Iterator[Part], syntax: str | None) -> HttpResponse:
    boundary = new_boundary()
    pieces = _coalesced(multipart_pieces(parts, boundary))
    return StreamingHttpResponse(_sent_from_threads(pieces, call.request_id, call.operation_name),
                                 content_type=multipart_content_type("application/dicom", boundary, syntax))


@signed_route(operation_name="GetDICOMStudy", parameters=_parameters, allow_unsigned_payload=True,
              resources=_datastore)
def retrieve_study(call: SignedCall, *, datastoreId: str, study: str) -> HttpResponse:
    image_sets = study_image_sets(datastore_id=datastoreId, study_uid=study, image_set_id=_image_set_id(call))
    call.authorize([image_set.arn for image_set in image_sets])
    parts, syntax = instances_p10_parts(image_sets=image_sets, study_uid=study, series_uid=None,
                                        accept=call.request.headers.get("Accept"))
    return _p10_response(call, parts, syntax)


@signed_route(operation_name="GetDICOMSeries", parameters=_parameters, allow_unsigned_payload=True,
              resources=_datastore)
def retrieve_series(call: SignedCall, *, datastoreId: str, study: str, series: str) -> HttpResponse:
    image_set = series_image_set(datastore_id=datastoreId, study_uid=study, series_uid=series,
                                 image_set_id=_image_set_id(call))
    call.authorize([image_set.arn])
    parts, syntax = instances_p10_parts(image_sets=[image_set], study_uid=study, series_uid=series,
                                        accept=call.request.headers.get("Accept"))
    return _p10_response(call, parts, syntax)


@signed_route(operation_name="GetDICOMStudyMetadata", parameters=_parameters, allow_unsigned_payload=True,
              resources=_datastore)
def study_metadata(call: SignedCall, *, datastoreId: str, study: str) -> HttpResponse:
    image_sets = study_image_sets(datastore_id=datastoreId, study_uid=study, image_set_id=_image_set_id(call))
    call.authorize([image_set.arn for image_set in image_sets])
    body = study_metadata_get(image_sets=image_sets, study_uid=study, base_url=_base_url(call, datastoreId))
    return _json_response(call, body)


@signed_route(operation_name="GetDICOMSeriesMetadata", parameters=_parameters, allow_unsigned_payload=True,
              resources=_datastore)
def series_metadata(call: SignedCall, *, datastoreId: str, study: str, series: str) -> HttpResponse:
    image_set = series_image_set(datastore_id=datastoreId, study_uid=study, series_uid=series,
                                 image_set_id=_image_set_id(call))
    call.authorize([image_set.arn])
    body = series_metadata_get(image_set=image_set, study_uid=study, series_uid=series,
                               base_url=_base_url(call, datastoreId))
    return _json_response(call, body)


@signed_route(operation_name="GetDICOMInstanceMetadata", parameters=_parameters, allow_unsigned_payload=True,
              resources=_datastore)
def instance_metadata(call: SignedCall, *, datastoreId: str, study: str, series: str, sop: str) -> HttpResponse:
    image_set = series_image_set(datastore_id=datastoreId, study_uid=study, series_uid=series,
                                 image_set_id=_image_set_id(call))
    call.authorize([image_set.arn])
    body = instance_metadata_get(image_set=image_set, study_uid=study, series_uid=series, sop_uid=sop,
                                 base_url=_base_url(call, datastoreId))
    return _json_response(call, body)


@signed_route(operation_name="GetDICOMInstanceFrames", parameters=_parameters, allow_unsigned_payload=True,
              resources=_datastore)
def instance_frames(call: SignedCall, *, datastoreId: str, study: str, series: str, sop: str,
                    frames: str) -> HttpResponse:
    image_set = series_image_set(datastore_id=datastoreId, study_uid=study, series_uid=series,
                                 image_set_id=_image_set_id(call))
    call.authorize([image_set.arn])
    found = frames_get(image_set=image_set, study_uid=study, series_uid=series, sop_uid=sop, frame_list=frames,
                       accept=call.request.headers.get("Accept"))
    boundary = new_boundary()
    content_type = multipart_content_type(found.media_type, boundary, found.transfer_syntax)
    if found.sizes is not None and len(found.sizes) == 1:  # the common case (a viewer asks frame by frame)
        body = multipart_body([(found.part_content_type, next(found.parts))], boundary)
        return HttpResponse(body, content_type=content_type)
    parts = (Part(found.part_content_type, [frame]) for frame in found.parts)
    response = StreamingHttpResponse(
        _sent_from_threads(_coalesced(multipart_pieces(parts, boundary)), call.request_id, call.operation_name),
        content_type=content_type)
    if found.sizes is not None:
        response["Content-Length"] = str(multipart_length([(found.part_content_type, size)
                                                           for size in found.sizes], boundary))
    return response


@signed_route(operation_name="GetDICOMBulkdata", parameters=_parameters, allow_unsigned_payload=True,
              resources=_datastore)
def instance_bulkdata(call: SignedCall, *, datastoreId: str, study: str, series: str, sop: str,
                      bulkdata: str) -> HttpResponse:
    image_set = series_image_set(datastore_id=datastoreId, study_uid=study, series_uid=series,
                                 image_set_id=_image_set_id(call))
    call.authorize([image_set.arn])
    value = bulkdata_get(image_set=image_set, study_uid=study, series_uid=series, sop_uid=sop,
                         bulkdata_hash_=bulkdata)
    for entry in accept_entries(call.request.headers.get("Accept")):
        if entry.media_type == "multipart/related" and entry.part_type in (None, OCTET_STREAM, "*/*"):
            boundary = new_boundary()  # PS3.18 clients ask for bulk data as a multipart body of one part
            return HttpResponse(multipart_body([(OCTET_STREAM, value)], boundary),
                                content_type=multipart_content_type(OCTET_STREAM, boundary))
        if entry.media_type in (OCTET_STREAM, "*/*", "application/*"):
            break
    else:
        if call.request.headers.get("Accept"):
            raise NotAcceptable("Bulk data is served as application/octet-stream")
    return HttpResponse(value, content_type=OCTET_STREAM)
