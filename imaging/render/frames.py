"""Render orchestration for the viewer and DICOMweb's rendered resources: which stored frame a request means, its
bytes from the blob store, a cached decode, then imaging.render.pixels's pipeline to an 8-bit JPEG, PNG or GIF;
series thumbnails; decoding neighbours ahead.

Callers (the viewer's pages and websocket consumer, imaging.services.rendered) check access first and pass the
ImageSetView they were allowed to open: nothing here checks who asks. The pixel work itself (decode, LUTs, colour,
encode) is imaging.render.pixels's; this module must not grow pixel code, only decide what to render and keep. Both
transports render through the same caches, so a frame the viewer decoded is not decoded again for DICOMweb.

The caches are per process, in cachetools (with a lock, as the consumer renders on worker threads), not Django's
cache framework: decoded frames and LUT pipelines are numpy arrays and objects that would be pickled on every get and
set, and every key holds an image set's content version or a frame id, so no process can serve a stale entry.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import LRUCache, cached
from django.conf import settings

from imaging.codecs.description import PixelDescription
from imaging.errors import NotFound
from imaging.models import ImageFrame
from imaging.render.imagemeta import ImageSetView, InstanceView
from imaging.render.pixels import (
    DecodedFrameCache,
    GrayscalePipeline,
    Region,
    Window,
    color_to_rgb8,
    decode_frame,
    encode_image,
    region_crop,
    skip_levels_for,
    stored_codestream,
)
from imaging.storage import blob_store


@dataclass(frozen=True)
class RenderedFrame:
    """An encoded frame, the window it was drawn with (None for colour) and how many levels below full it was
    decoded."""

    body: bytes
    window: Window | None
    description: PixelDescription
    skip_levels: int


_decoded = DecodedFrameCache(getattr(settings, "APERTURE_RENDER_CACHE_BYTES", 256 * 1024 * 1024))

# LUT pipelines by (image set, version, instance): each holds its own few tables, so a count bounds them.
PIPELINES_KEPT = 512
_pipelines: LRUCache[tuple[str, int, str], GrayscalePipeline] = LRUCache(maxsize=PIPELINES_KEPT)

# Thumbnails by (image set, version, series), bounded by bytes: 2048 thumbnails (the count kept before) of up to
# 16 KiB, more than a 128 px JPEG at quality 75 takes.
THUMBNAIL_CACHE_BYTES = 2048 * 16 * 1024
_thumbnails: LRUCache[tuple[str, int, str], bytes] = LRUCache(maxsize=THUMBNAIL_CACHE_BYTES, getsizeof=len)

# Encoded images by everything that decides their bytes (the image set version holds the instance's LUT values),
# bounded by bytes: a warm request for a picture already drawn (a DICOMweb client's repeat, the viewer scrolling
# back) costs a lookup instead of a LUT pass and a JPEG encode (about 1 ms of a 512x512 CT frame).
RENDERED_CACHE_BYTES = 64 * 1024 * 1024
_rendered: LRUCache[tuple, RenderedFrame] = LRUCache(maxsize=RENDERED_CACHE_BYTES, getsizeof=lambda r: len(r.body))
_rendered_lock = threading.Lock()


@cached(_pipelines, key=lambda view, instance, description: (view.image_set_id, view.version, instance.sop_uid),
        lock=threading.Lock())
def _pipeline(view: ImageSetView, instance: InstanceView, description: PixelDescription) -> GrayscalePipeline:
    return GrayscalePipeline(instance.dicom, instance.vrs, description)


def _decoded_frame(view: ImageSetView, description: PixelDescription, frame_id: str, skip: int,
                   blob_key: str | None = None) -> np.ndarray:
    """The frame's samples, `skip` resolution levels below full, from the cache or the blob store (at `blob_key`
    where the caller has looked it up already, so that a render needs no database)."""
    cached_frame = _decoded.get((frame_id, skip))
    if cached_frame is not None:
        return cached_frame
    if blob_key is None:
        row = ImageFrame.objects.filter(image_set_id=view.image_set_id, frame_id=frame_id).first()
        blob_key = row.blob_key if row else None
    data = stored_codestream(blob_store(), blob_key, description, skip) if blob_key else None
    if data is None:
        raise NotFound("No such frame")
    frame = decode_frame(data, description, skip_levels=skip)
    _decoded.put((frame_id, skip), frame)
    return frame


def frame_render(*, view: ImageSetView, index: int, series_uid: str | None = None, window: Window | None = None,
                 invert: bool = False, max_size: tuple[int, int] | None = None, fmt: str = "jpeg",
                 quality: int = 85) -> tuple[bytes, dict[str, Any]]:
    """Frame `index` (0-based, display order) of the image set, or of one series of it, as an image."""
    frames = view.frames(series_uid)
    if not 0 <= index < len(frames):
        raise NotFound("No such frame")
    instance, number, frame_id = frames[index]
    rendered = instance_frame_render(view=view, instance=instance, number=number, window=window, invert=invert,
                                     max_size=max_size, fmt=fmt, quality=quality)
    description = rendered.description
    return rendered.body, {
        "frame": index, "count": len(frames), "sop": instance.sop_uid, "number": number,
        "instanceNumber": instance.instance_number, "position": instance.position,
        "rows": description.rows, "columns": description.columns, "spacing": instance.pixel_spacing(),
        "window": [rendered.window.center, rendered.window.width] if rendered.window else None,
    }


def instance_frame_render(*, view: ImageSetView, instance: InstanceView, number: int, window: Window | None = None,
                          invert: bool = False, max_size: tuple[int, int] | None = None, fmt: str = "jpeg",
                          quality: int = 85, region: Region | None = None, enlarge: bool = False,
                          blob_key: str | None = None) -> RenderedFrame:
    """Frame `number` (1-based) of one instance as an image: the stored window unless `window` is given, MONOCHROME1
    inverted, fit within `max_size` (grown to it with `enlarge`), of `region` only where one is given; decoded from
    the lowest resolution level that still covers `max_size`. With the frame's `blob_key`, no database is read."""
    if not 1 <= number <= len(instance.frame_ids):
        raise NotFound("No such frame")
    key = (view.image_set_id, view.version, instance.sop_uid, number, window, invert, max_size, fmt, quality, region,
           enlarge)
    with _rendered_lock:
        kept = _rendered.get(key)
    if kept is not None:
        return kept
    rendered = _frame_draw(view=view, instance=instance, number=number, window=window, invert=invert,
                           max_size=max_size, fmt=fmt, quality=quality, region=region, enlarge=enlarge,
                           blob_key=blob_key)
    if len(rendered.body) <= RENDERED_CACHE_BYTES // 16:
        with _rendered_lock:
            _rendered[key] = rendered
    return rendered


def _frame_draw(*, view: ImageSetView, instance: InstanceView, number: int, window: Window | None, invert: bool,
                max_size: tuple[int, int] | None, fmt: str, quality: int, region: Region | None, enlarge: bool,
                blob_key: str | None) -> RenderedFrame:
    frame_id = instance.frame_ids[number - 1]
    description = PixelDescription.from_dicom(instance.dicom, instance.stored_transfer_syntax)
    skip = skip_levels_for(description, max_size, region=region)
    stored = _decoded_frame(view, description, frame_id, skip, blob_key)
    if region is not None:
        stored = region_crop(stored, region, skip_levels=skip)
    photometric = description.decoded_photometric
    if photometric.startswith("MONOCHROME") and stored.ndim == 2:
        pipeline = _pipeline(view, instance, description)
        effective = window or pipeline.default_window()
        pixels = pipeline.render(stored, effective, invert=(photometric == "MONOCHROME1") != invert)
    else:
        pixels = color_to_rgb8(stored, description, instance.dicom, instance.vrs)
        effective = None
        if invert:
            pixels = 255 - pixels
    body = encode_image(pixels, fmt=fmt, quality=quality, max_size=max_size, enlarge=enlarge)
    return RenderedFrame(body=body, window=effective, description=description, skip_levels=skip)


@cached(_thumbnails, key=lambda *, view, series_uid: (view.image_set_id, view.version, series_uid),
        lock=threading.Lock())
def series_thumbnail(*, view: ImageSetView, series_uid: str) -> bytes:
    """The middle frame of a series at most 128 px, from a reduced-resolution decode; cached per version."""
    frames = view.frames(series_uid)
    if not frames:
        raise NotFound("No frames")
    body, _ = frame_render(view=view, index=len(frames) // 2, series_uid=series_uid, max_size=(128, 128), quality=75)
    return body


def frames_prefetch(*, view: ImageSetView, indices: list[int], series_uid: str | None = None,
                    max_size: tuple[int, int] | None = None) -> None:
    """Decode neighbouring frames ahead, at the resolution a render for `max_size` will ask for."""
    frames = view.frames(series_uid)
    for index in indices:
        if 0 <= index < len(frames):
            instance, _, frame_id = frames[index]
            try:
                description = PixelDescription.from_dicom(instance.dicom, instance.stored_transfer_syntax)
                _decoded_frame(view, description, frame_id, skip_levels_for(description, max_size))
            except Exception:  # prefetching is best effort; a real request reports the problem
                return
