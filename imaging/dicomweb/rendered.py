"""DICOMweb rendered resources and thumbnails (GetDICOMRendered, GetDICOMThumbnail; PS3.18 10.4 and 10.5) under
/datastore/{id}/studies/…: one view per operation for every level, the path saying which level.

The view is the happy path (imaging.aws.signed authenticates, authorizes the data store and maps errors): parse the
query, find the image sets, authorize each, then hand over to imaging.services.rendered, which chooses what to draw
and draws it through the render service the viewer uses. A multipart body is made one image at a time in worker
threads as it is sent.
"""
from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from imaging.aws.signed import SignedCall, signed_route
from imaging.errors import ValidationFailed
from imaging.models import ImageSet, datastore_arn
from imaging.services.rendered import (
    RenderedBody,
    frame_numbers_parse,
    instance_rendered,
    rendered_image_sets,
    rendition_parse,
    study_rendered,
    thumbnail_image,
)

logger = logging.getLogger(__name__)


def _parameters(request: HttpRequest, *, datastoreId: str, study: str, series: str | None = None,
                sop: str | None = None, frames: str | None = None) -> dict[str, Any]:
    labels = {"series": series, "sop": sop, "frames": frames}
    return {"datastoreId": datastoreId, "study": study, **{k: v for k, v in labels.items() if v is not None},
            "imageSetId": request.GET.get("imageSetId"), "query": request.GET.urlencode()[:1024]}


def _resources(call: SignedCall) -> list[str]:
    return [datastore_arn(call.parameters["datastoreId"])]


def _image_sets(call: SignedCall, *, datastoreId: str, study: str, series: str | None) -> list[ImageSet]:
    image_sets = rendered_image_sets(datastore_id=datastoreId, study_uid=study, series_uid=series,
                                     image_set_id=call.request.GET.get("imageSetId"))
    # Each image set drawn from is authorized: a policy that denies one denies its pictures too.
    call.authorize([image_set.arn for image_set in image_sets])
    return image_sets


def _response(call: SignedCall, body: RenderedBody) -> HttpResponse:
    if body.image is not None:
        return HttpResponse(body.image, content_type=body.media_type)
    assert body.parts is not None
    return StreamingHttpResponse(_sent_from_threads(body.parts, call), content_type=body.media_type)


async def _sent_from_threads(parts: Iterator[bytes], call: SignedCall) -> AsyncIterator[bytes]:
    """Each part drawn in a worker thread (blob reads, decodes and encodes block) and sent before the next is made.
    A failure once the status line is out can only cut the body short (no closing boundary tells the client), so
    it is logged here."""
    finished = object()
    while True:
        try:
            part = await sync_to_async(next, thread_sensitive=False)(parts, finished)
        except Exception:
            logger.exception("%s failed while streaming (request %s)", call.operation_name, call.request_id)
            raise
        if part is finished:
            return
        yield part


@signed_route(operation_name="GetDICOMRendered", parameters=_parameters, allow_unsigned_payload=True,
              resources=_resources)
def get_rendered(call: SignedCall, *, datastoreId: str, study: str, series: str | None = None,
                 sop: str | None = None, frames: str | None = None) -> HttpResponse:
    request = call.request
    rendition = rendition_parse(query=dict(request.GET.lists()), accept=request.headers.get("Accept"))
    numbers = frame_numbers_parse(text=frames) if frames is not None else None
    image_sets = _image_sets(call, datastoreId=datastoreId, study=study, series=series)
    if sop is None:
        body = study_rendered(image_sets=image_sets, study_uid=study, series_uid=series, rendition=rendition)
    else:
        assert series is not None
        body = instance_rendered(image_sets=image_sets, study_uid=study, series_uid=series, sop_uid=sop,
                                 frame_numbers=numbers, rendition=rendition)
    return _response(call, body)


@signed_route(operation_name="GetDICOMThumbnail", parameters=_parameters, allow_unsigned_payload=True,
              resources=_resources)
def get_thumbnail(call: SignedCall, *, datastoreId: str, study: str, series: str | None = None,
                  sop: str | None = None, frames: str | None = None) -> HttpResponse:
    request = call.request
    rendition = rendition_parse(query=dict(request.GET.lists()), accept=request.headers.get("Accept"))
    number = None
    if frames is not None:
        numbers = frame_numbers_parse(text=frames)
        if len(numbers) != 1:
            raise ValidationFailed("A thumbnail is of one frame")
        number = numbers[0]
    image_sets = _image_sets(call, datastoreId=datastoreId, study=study, series=series)
    body = thumbnail_image(image_sets=image_sets, study_uid=study, series_uid=series, sop_uid=sop,
                           frame_number=number, rendition=rendition)
    return _response(call, body)
