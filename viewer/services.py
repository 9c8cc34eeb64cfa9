"""The viewer's use cases: find studies, describe a study, render a frame. Views and the consumer call these."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from imaging.codecs.description import PixelDescription
from imaging.errors import AccessDenied, NotFound
from imaging.models import ImageFrame, ImageSet, ImageSetState, StudyIndex, StudyNameToken
from imaging.services.sharing import share_access
from imaging.services.studies import name_tokens
from imaging.storage import blob_store
from viewer.access import can_read, readable_datastores
from viewer.imagemeta import ImageSetView, InstanceView, image_set_view
from viewer.render import (
    DecodedFrameCache,
    GrayscalePipeline,
    Window,
    color_to_rgb8,
    decode_frame,
    encode_image,
    skip_levels_for,
    stored_codestream,
)

STUDY_SORTS = {"date": ("-study_date", "-id"), "-date": ("study_date", "id"), "name": ("patient_name", "id"),
               "-name": ("-patient_name", "-id"), "id": ("patient_id", "id")}
PAGE_SIZE = 25

_decoded = DecodedFrameCache(getattr(settings, "APERTURE_RENDER_CACHE_BYTES", 256 * 1024 * 1024))
_pipelines: OrderedDict[tuple, GrayscalePipeline] = OrderedDict()
_pipelines_lock = threading.Lock()


RARE_NAME_MATCHES = 2000


def _name_part_prefix(token: str) -> Q:
    """Studies with a name part starting with `token`, as an index range (token >= 'DO' and < 'DP').

    A rare prefix is resolved to its few study ids first (then only those rows are sorted); a common one is checked
    row by row while the study index is read in sort order, which stops as soon as the page is full.
    """
    upper = token[:-1] + chr(ord(token[-1]) + 1)
    matching = StudyNameToken.objects.filter(token__gte=token, token__lt=upper)
    ids = list(matching.values_list("study_id", flat=True)[: RARE_NAME_MATCHES + 1])
    if len(ids) <= RARE_NAME_MATCHES:
        return Q(id__in=ids)
    return Q(Exists(matching.filter(study=OuterRef("pk"))))


def studies_search(*, user, query: dict[str, str], page: int = 1) -> tuple[list[StudyIndex], bool]:
    """A page of studies the user may read, and whether there is a next page."""
    queryset = StudyIndex.objects.filter(datastore__in=readable_datastores(user))
    if query.get("datastore"):
        queryset = queryset.filter(datastore_id=query["datastore"])
    for token in name_tokens(query.get("q", ""))[:3]:
        queryset = queryset.filter(_name_part_prefix(token))
    if query.get("patient_id"):
        queryset = queryset.filter(patient_id=query["patient_id"])
    if query.get("accession"):
        queryset = queryset.filter(accession_number=query["accession"])
    if query.get("date_from"):
        queryset = queryset.filter(study_date__gte=query["date_from"].replace("-", ""))
    if query.get("date_to"):
        queryset = queryset.filter(study_date__lte=query["date_to"].replace("-", ""))
    if query.get("modality"):
        queryset = queryset.filter(modalities__contains=f" {query['modality'].upper()} ")
    queryset = queryset.order_by(*STUDY_SORTS.get(query.get("sort", "date"), STUDY_SORTS["date"]))
    offset = (max(page, 1) - 1) * PAGE_SIZE
    rows = list(queryset[offset : offset + PAGE_SIZE + 1])
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


@dataclass
class SeriesSummary:
    image_set_id: str
    series_uid: str
    description: str
    modality: str
    number: str
    instances: list[InstanceView]


def study_detail(*, user, datastore_id: str, study_uid: str) -> tuple[StudyIndex, list[SeriesSummary]]:
    if not can_read(user, datastore_id):
        raise NotFound("No such study")
    study = StudyIndex.objects.filter(datastore_id=datastore_id, study_instance_uid=study_uid).first()
    if study is None:
        raise NotFound("No such study")
    return study, study_series(datastore_id=datastore_id, study_uid=study_uid)


def study_series(*, datastore_id: str, study_uid: str) -> list[SeriesSummary]:
    """The series of a study without a user check (for share links, which were checked already)."""
    series: list[SeriesSummary] = []
    for image_set in ImageSet.objects.filter(datastore_id=datastore_id, study_instance_uid=study_uid,
                                             is_primary=True).exclude(state=ImageSetState.DELETED):
        view = image_set_view(datastore_id=datastore_id, image_set_id=image_set.id)
        for series_uid, dicom in view.series.items():
            series.append(SeriesSummary(
                image_set_id=image_set.id, series_uid=series_uid,
                description=str(dicom.get("SeriesDescription") or ""), modality=str(dicom.get("Modality") or ""),
                number=str(dicom.get("SeriesNumber") or ""),
                instances=[i for i in view.instances if i.series_uid == series_uid]))
    series.sort(key=lambda s: (int(s.number) if s.number.lstrip("-").isdigit() else 10**9, s.series_uid))
    return series


def _require_view_access(*, user, datastore_id: str, image_set_id: str, share_token: str | None) -> None:
    if share_token:
        share_access(share_token, user=user if getattr(user, "is_authenticated", False) else None,
                     datastore_id=datastore_id, image_set_id=image_set_id)
    elif not can_read(user, datastore_id):
        raise AccessDenied("You may not read this data store")


def viewable_image_set(*, user, datastore_id: str, image_set_id: str, share_token: str | None = None) -> ImageSetView:
    """The image set, if the user may read its data store or holds a share link that covers it."""
    _require_view_access(user=user, datastore_id=datastore_id, image_set_id=image_set_id, share_token=share_token)
    return image_set_view(datastore_id=datastore_id, image_set_id=image_set_id)


def can_still_view(*, user, share_token: str | None, view: ImageSetView) -> bool:
    """Whether an open viewer may go on showing `view` (a grant or a data store can go away while it is open)."""
    try:
        _require_view_access(user=user, datastore_id=view.datastore_id, image_set_id=view.image_set_id,
                             share_token=share_token)
    except AccessDenied:
        return False
    return True


def _pipeline(view: ImageSetView, instance: InstanceView, module: PixelDescription) -> GrayscalePipeline:
    key = (view.image_set_id, view.version, instance.sop_uid)
    with _pipelines_lock:
        if key in _pipelines:
            _pipelines.move_to_end(key)
            return _pipelines[key]
    pipeline = GrayscalePipeline(instance.dicom, instance.vrs, module)
    with _pipelines_lock:
        _pipelines[key] = pipeline
        while len(_pipelines) > 512:
            _pipelines.popitem(last=False)
    return pipeline


def decoded_frame(view: ImageSetView, module: PixelDescription, frame_id: str, skip: int) -> np.ndarray:
    cached = _decoded.get((frame_id, skip))
    if cached is not None:
        return cached
    row = ImageFrame.objects.filter(image_set_id=view.image_set_id, frame_id=frame_id).first()
    data = stored_codestream(blob_store(), row.blob_key, module, skip) if row else None
    if data is None:
        raise NotFound("No such frame")
    frame = decode_frame(data, module, skip_levels=skip)
    _decoded.put((frame_id, skip), frame)
    return frame


def render(*, view: ImageSetView, index: int, series_uid: str | None = None, window: Window | None = None,
           invert: bool = False, max_size: tuple[int, int] | None = None, fmt: str = "jpeg",
           quality: int = 85) -> tuple[bytes, dict[str, Any]]:
    """Frame `index` (0-based, display order) of the image set, or of one series of it, as an image."""
    frames = view.frames(series_uid)
    if not 0 <= index < len(frames):
        raise NotFound("No such frame")
    instance, number, frame_id = frames[index]
    module = PixelDescription.from_dicom(instance.dicom, instance.stored_transfer_syntax)
    skip = skip_levels_for(module, max_size)
    stored = decoded_frame(view, module, frame_id, skip)
    photometric = module.decoded_photometric
    if photometric.startswith("MONOCHROME") and stored.ndim == 2:
        pipeline = _pipeline(view, instance, module)
        effective = window or pipeline.default_window()
        pixels = pipeline.render(stored, effective, invert=(photometric == "MONOCHROME1") != invert)
    else:
        pixels = color_to_rgb8(stored, module, instance.dicom, instance.vrs)
        effective = None
        if invert:
            pixels = 255 - pixels
    body = encode_image(pixels, fmt=fmt, quality=quality, max_size=max_size)
    return body, {
        "frame": index, "count": len(frames), "sop": instance.sop_uid, "number": number,
        "instanceNumber": instance.instance_number, "position": instance.position,
        "rows": module.rows, "columns": module.columns, "spacing": instance.pixel_spacing(),
        "window": [effective.center, effective.width] if effective else None,
    }


_thumbnails: OrderedDict[tuple, bytes] = OrderedDict()
_thumbnails_lock = threading.Lock()


def series_thumbnail(*, view: ImageSetView, series_uid: str) -> bytes:
    """The middle frame of a series at most 128 px, from a reduced-resolution decode; cached per version."""
    key = (view.image_set_id, view.version, series_uid)
    with _thumbnails_lock:
        body = _thumbnails.get(key)
    if body is None:
        frames = view.frames(series_uid)
        if not frames:
            raise NotFound("No frames")
        body, _ = render(view=view, index=len(frames) // 2, series_uid=series_uid, max_size=(128, 128), quality=75)
        with _thumbnails_lock:
            _thumbnails[key] = body
            while len(_thumbnails) > 2048:
                _thumbnails.popitem(last=False)
    return body


def prefetch(*, view: ImageSetView, indices: list[int], series_uid: str | None = None,
             max_size: tuple[int, int] | None = None) -> None:
    """Decode neighbouring frames ahead, at the resolution a render for `max_size` will ask for."""
    frames = view.frames(series_uid)
    for index in indices:
        if 0 <= index < len(frames):
            instance, _, frame_id = frames[index]
            try:
                module = PixelDescription.from_dicom(instance.dicom, instance.stored_transfer_syntax)
                decoded_frame(view, module, frame_id, skip_levels_for(module, max_size))
            except Exception:  # prefetching is best effort; a real request reports the problem
                return
