"""DICOMweb rendered resources and thumbnails (PS3.18 10.4 Retrieve Rendered, 10.5 Retrieve Thumbnail; SPEC 11):
frames drawn as consumer images by the viewer's render service (imaging.render), through the same caches.

What each resource answers. PS3.18 leaves the composite resources to the server; this one chooses:
- `…/instances/{sop}/rendered`: the instance's first frame; `…/frames/{list}/rendered`: those frames, one image for
  one frame, a multipart/related body of one part per frame (in the order asked) for several.
- `/studies/{s}/rendered` and `…/series/{se}/rendered`: one image, the representative frame (below), unless the
  Accept header asks for `multipart/related; type="image/…"`: then the first frame of every instance (series by
  SeriesNumber, instances in the viewer's display order), rendered and sent one at a time.
- thumbnails: one image of the representative frame, at most 128x128 unless a viewport says otherwise: of a series
  its middle frame in display order (the viewer's series thumbnail, from its cache), of a study that of its first
  series, of an instance its middle frame, of `frames/{n}` that frame.

The query (`rendition_parse`): `window=center,width[,function]` (LINEAR by default, LINEAR_EXACT or SIGMOID);
`viewport=vw,vh[,sx,sy,sw,sh]` (the picture fits within vw x vh keeping its aspect ratio, grown or shrunk; sx,sy,sw,sh
a region of the frame in its own pixels, a negative sw or sh flipping it; empty members mean the frame's edge);
`quality=1..100` (JPEG). Other parameters PS3.18 names (annotation, charset, iccprofile) are ignored. The Accept
header picks image/jpeg (the default), image/png or image/gif, bare or as the type of a multipart/related; anything
else is a NotAcceptable (406). Bad values are a ValidationFailed (400) naming the parameter.

A frame is decoded only down to the resolution level the viewport needs (HTJ2K levels, imaging.render.pixels).
Resolving, authorizing (by the caller) and touching happen before the first byte; a multipart body is then made
without the database (the frames' blob keys are read up front), so it may be produced in any thread.
"""
from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from typing import Iterator, Mapping

from imaging.errors import NotAcceptable, NotFound, ValidationFailed
from imaging.models import DatastoreStatus, ImageFrame, ImageSet, ImageSetState
from imaging.render import frames as render_frames
from imaging.render.imagemeta import ImageSetView, InstanceView, image_set_view_of
from imaging.render.pixels import Region, Window
from imaging.services.datastores import datastore_require_active
from imaging.services.imagesets import imageset_touch

MEDIA_FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/gif": "gif"}
DEFAULT_MEDIA_TYPE = "image/jpeg"
WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
DEFAULT_QUALITY = 90
THUMBNAIL_SIZE = (128, 128)
THUMBNAIL_QUALITY = 75  # the viewer's series thumbnails: a default thumbnail is one of them
INTEGER = re.compile(r"[-+]?[0-9]{1,10}")
DIGITS = re.compile(r"[0-9]{1,10}")
# Blob keys looked up per query for a multipart body: a series of thousands of instances stays within the bound
# variables a database accepts in one statement (SQLite: 32766).
KEYS_PER_QUERY = 500
# A viewport grows the picture: its size is bounded so one request cannot ask for gigabytes of pixels.
MAX_VIEWPORT = 4096


@dataclass(frozen=True)
class RegionAsked:
    """PS3.18's sx,sy,sw,sh as given; None where a member was left empty (the frame's edge)."""

    x: int
    y: int
    width: int | None
    height: int | None


@dataclass(frozen=True)
class Rendition:
    """How to draw: the media type, whether the client asked for a multipart body (`multipart`) or left the form
    open (`any_form`: no Accept, or `*/*`), the window, viewport, region and JPEG quality asked for (None: default)."""

    media_type: str = DEFAULT_MEDIA_TYPE
    multipart: bool = False
    any_form: bool = True
    window: Window | None = None
    viewport: tuple[int, int] | None = None
    region: RegionAsked | None = None
    quality: int | None = None

    @property
    def fmt(self) -> str:
        return MEDIA_FORMATS[self.media_type]

    @property
    def is_default(self) -> bool:
        return (self.media_type == DEFAULT_MEDIA_TYPE and self.window is None and self.viewport is None
                and self.quality is None)


def rendition_parse(*, query: Mapping[str, list[str]], accept: str | None) -> Rendition:
    """The query parameters and Accept header of a rendered or thumbnail request (see the module docstring)."""
    media_type, multipart, any_form = _accepted(accept)
    viewport, region = _viewport(_one_value(query, "viewport"))
    return Rendition(media_type=media_type, multipart=multipart, any_form=any_form,
                     window=_window(_one_value(query, "window")), viewport=viewport, region=region,
                     quality=_quality(_one_value(query, "quality")))


def _one_value(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name) or []
    if len(values) > 1:
        raise ValidationFailed(f"{name} may be given once")
    return values[0] if values else None


def _accepted(accept: str | None) -> tuple[str, bool, bool]:
    """(media type, multipart asked, either form fine) of the most preferred entry we can serve."""
    if not accept or not accept.strip():
        return DEFAULT_MEDIA_TYPE, False, True
    entries = []
    for position, entry in enumerate(accept.split(",")):
        media, *parameters = [part.strip() for part in entry.split(";")]
        values = {}
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            values[name.strip().lower()] = value.strip().strip('"')
        try:
            weight = float(values.get("q", "1"))
        except ValueError:
            weight = 0.0
        if weight > 0:
            entries.append((-weight, position, media.lower(), values.get("type", "").lower()))
    for _, _, media, part_type in sorted(entries):
        if media in MEDIA_FORMATS:
            return media, False, False
        if media == "image/*":
            return DEFAULT_MEDIA_TYPE, False, False
        if media == "*/*":
            return DEFAULT_MEDIA_TYPE, False, True
        if media in ("multipart/related", "multipart/*") and part_type in ("", "image/*", *MEDIA_FORMATS):
            return (part_type if part_type in MEDIA_FORMATS else DEFAULT_MEDIA_TYPE), True, False
    raise NotAcceptable("Rendered resources are served as image/jpeg, image/png or image/gif "
                        "(alone or as the type of multipart/related)")


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValidationFailed(f"{name} must be a number, not {text[:32]!r}")
    return value


def _integer(text: str, name: str, low: int, high: int) -> int:
    # ASCII digits only: int() would also take "1_000" and other scripts' digits.
    if not INTEGER.fullmatch(text.strip()):
        raise ValidationFailed(f"{name} must be an integer, not {text[:32]!r}")
    value = int(text.strip())
    if not low <= value <= high:
        raise ValidationFailed(f"{name} must be between {low} and {high}")
    return value


def _window(text: str | None) -> Window | None:
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3):
        raise ValidationFailed("window is center,width,function")
    center, width = _number(parts[0], "window center"), _number(parts[1], "window width")
    function = parts[2].upper() if len(parts) == 3 and parts[2] else "LINEAR"
    if function not in WINDOW_FUNCTIONS:
        raise ValidationFailed(f"window function must be one of {', '.join(WINDOW_FUNCTIONS)}")
    if width <= 0 or (function == "LINEAR" and width < 1):
        raise ValidationFailed("window width must be positive (at least 1 for LINEAR)")
    return Window(center, width, function)


def _viewport(text: str | None) -> tuple[tuple[int, int] | None, RegionAsked | None]:
    if text is None:
        return None, None
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 6):
        raise ValidationFailed("viewport is vw,vh or vw,vh,sx,sy,sw,sh")
    size = (_integer(parts[0], "viewport width", 1, MAX_VIEWPORT),
            _integer(parts[1], "viewport height", 1, MAX_VIEWPORT))
    if len(parts) == 2:
        return size, None
    edge = 2**31
    sx = _integer(parts[2], "viewport sx", 0, edge) if parts[2] else 0
    sy = _integer(parts[3], "viewport sy", 0, edge) if parts[3] else 0
    sw = _integer(parts[4], "viewport sw", -edge, edge) if parts[4] else None
    sh = _integer(parts[5], "viewport sh", -edge, edge) if parts[5] else None
    if sw == 0 or sh == 0:
        raise ValidationFailed("viewport sw and sh must not be 0")
    return size, RegionAsked(sx, sy, sw, sh)


def _quality(text: str | None) -> int | None:
    return None if text is None else _integer(text, "quality", 1, 100)


def frame_numbers_parse(*, text: str) -> list[int]:
    """A frameList: 1-based, comma-separated, no duplicates (SPEC 11.3); anything else is a ValidationFailed."""
    numbers = []
    for part in text.split(","):
        if not DIGITS.fullmatch(part) or int(part) == 0:
            raise ValidationFailed("frameList is a comma-separated list of frame numbers from 1")
        numbers.append(int(part))
    if len(set(numbers)) != len(numbers):
        raise ValidationFailed("frameList names a frame twice")
    return numbers


def rendered_image_sets(*, datastore_id: str, study_uid: str, series_uid: str | None = None,
                        image_set_id: str | None = None) -> list[ImageSet]:
    """The image sets a rendered or thumbnail request reads: the one `imageSetId` pins, else the primary image sets
    of the study (of the one series). Callers authorize the action on each before rendering from it."""
    queryset = ImageSet.objects.filter(datastore_id=datastore_id).exclude(state=ImageSetState.DELETED).exclude(
        content_version=0)
    if image_set_id:
        queryset = queryset.filter(pk=image_set_id)
    else:
        queryset = queryset.filter(study_instance_uid=study_uid, is_primary=True)
        if series_uid is not None:
            queryset = queryset.filter(series_instance_uid=series_uid)
    # The data store comes in the same query: one round trip less on the path of every rendered frame.
    image_sets = list(queryset.select_related("datastore").order_by("id"))
    if not image_sets or image_sets[0].datastore.status != DatastoreStatus.ACTIVE:
        datastore_require_active(datastore_id=datastore_id)  # the data store's own error first
    if not image_sets:
        raise NotFound("No image set holds that study" if series_uid is None else "No image set holds that series")
    return image_sets


@dataclass(frozen=True)
class FrameChoice:
    """One frame to draw: where it is, and its blob (read up front so drawing needs no database)."""

    view: ImageSetView
    instance: InstanceView
    number: int
    blob_key: str | None = None


@dataclass
class RenderedBody:
    """A single image (`image`) or the parts of a multipart/related body, each drawn when asked for (`parts`)."""

    media_type: str
    image: bytes | None = None
    parts: Iterator[bytes] | None = None


def _views(image_sets: list[ImageSet], study_uid: str) -> list[ImageSetView]:
    views = [image_set_view_of(image_set=image_set) for image_set in image_sets]
    views = [view for view in views if view.study.get("StudyInstanceUID") == study_uid]
    if not views:
        raise NotFound("No image set holds that study")
    return views


def _series_order(views: list[ImageSetView], series_uid: str | None) -> list[tuple[ImageSetView, str]]:
    """(view, series) pairs of the request, series by SeriesNumber then UID."""
    found = [(view, uid) for view in views for uid in view.series if series_uid is None or uid == series_uid]
    if not found:
        raise NotFound("That series is not in the study")

    def number(pair: tuple[ImageSetView, str]) -> tuple[float, str]:
        try:
            return float(pair[0].series[pair[1]].get("SeriesNumber")), pair[1]
        except (TypeError, ValueError):
            return math.inf, pair[1]

    return sorted(found, key=number)


def _instance(views: list[ImageSetView], series_uid: str, sop_uid: str) -> tuple[ImageSetView, InstanceView]:
    for view in views:
        for instance in view.instances:
            if instance.sop_uid == sop_uid and instance.series_uid == series_uid:
                return view, instance
    raise NotFound("That instance is not in the series")


def _representative(views: list[ImageSetView], series_uid: str | None) -> FrameChoice:
    """The middle frame (display order) of the series, or of the study's first series with frames."""
    for view, uid in _series_order(views, series_uid):
        frames = view.frames(uid)
        if frames:
            instance, number, _ = frames[len(frames) // 2]
            return FrameChoice(view, instance, number)
    raise NotFound("No frames to render")


def _every_instance(views: list[ImageSetView], series_uid: str | None) -> list[FrameChoice]:
    choices = [FrameChoice(view, instance, 1) for view, uid in _series_order(views, series_uid)
               for instance in view.instances if instance.series_uid == uid and instance.frame_ids]
    if not choices:
        raise NotFound("No frames to render")
    return choices


def _with_blob_keys(choices: list[FrameChoice]) -> list[FrameChoice]:
    by_set: dict[str, set[str]] = {}
    for choice in choices:
        by_set.setdefault(choice.view.image_set_id, set()).add(choice.instance.frame_ids[choice.number - 1])
    keys = {}
    for image_set_id, frame_ids in by_set.items():
        ordered = sorted(frame_ids)
        for start in range(0, len(ordered), KEYS_PER_QUERY):
            keys.update(ImageFrame.objects.filter(
                image_set_id=image_set_id, frame_id__in=ordered[start:start + KEYS_PER_QUERY]).values_list(
                "frame_id", "blob_key"))
    found = []
    for choice in choices:
        key = keys.get(choice.instance.frame_ids[choice.number - 1])
        if key is None:
            raise NotFound("A frame of the instance is missing")
        found.append(FrameChoice(choice.view, choice.instance, choice.number, key))
    return found


def _region(asked: RegionAsked | None, instance: InstanceView) -> Region | None:
    if asked is None:
        return None
    columns, rows = instance.columns, instance.rows
    if asked.x >= columns or asked.y >= rows:
        raise ValidationFailed(f"viewport region starts outside the {columns}x{rows} frame")
    width = asked.width if asked.width is not None else columns - asked.x
    height = asked.height if asked.height is not None else rows - asked.y
    return Region(asked.x, asked.y, width, height)


def _draw(choice: FrameChoice, rendition: Rendition, *, thumbnail: bool) -> render_frames.RenderedFrame:
    default_size, default_quality = (THUMBNAIL_SIZE, THUMBNAIL_QUALITY) if thumbnail else (None, DEFAULT_QUALITY)
    return render_frames.instance_frame_render(
        view=choice.view, instance=choice.instance, number=choice.number, window=rendition.window,
        max_size=rendition.viewport or default_size, fmt=rendition.fmt,
        quality=rendition.quality or default_quality, region=_region(rendition.region, choice.instance),
        enlarge=rendition.viewport is not None, blob_key=choice.blob_key)


def _multipart(choices: list[FrameChoice], rendition: Rendition, *, thumbnail: bool) -> RenderedBody:
    boundary = uuid.uuid4().hex
    choices = _with_blob_keys(choices)
    for choice in choices:
        _region(rendition.region, choice.instance)  # a bad region is a 400 before the first byte, not a cut body

    def parts() -> Iterator[bytes]:
        head = f"--{boundary}\r\nContent-Type: {rendition.media_type}\r\n\r\n".encode()
        for choice in choices:
            yield head + _draw(choice, rendition, thumbnail=thumbnail).body + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return RenderedBody(media_type=f'multipart/related; type="{rendition.media_type}"; boundary={boundary}',
                        parts=parts())


def _single(choice: FrameChoice, rendition: Rendition, *, thumbnail: bool) -> RenderedBody:
    if rendition.multipart:
        return _multipart([choice], rendition, thumbnail=thumbnail)
    return RenderedBody(media_type=rendition.media_type, image=_draw(choice, rendition, thumbnail=thumbnail).body)


def _touch(image_sets: list[ImageSet], views: list[ImageSetView]) -> None:
    read = {view.image_set_id for view in views}
    for image_set in image_sets:
        if image_set.id in read:
            imageset_touch(image_set=image_set)


def study_rendered(*, image_sets: list[ImageSet], study_uid: str, series_uid: str | None,
                   rendition: Rendition) -> RenderedBody:
    """A study's or series' rendered resource: its representative frame, or with a multipart Accept the first frame
    of every instance."""
    views = _views(image_sets, study_uid)
    if rendition.multipart:
        choices = _every_instance(views, series_uid)
        _touch(image_sets, views)
        return _multipart(choices, rendition, thumbnail=False)
    choice = _representative(views, series_uid)
    _touch(image_sets, [choice.view])
    return _single(choice, rendition, thumbnail=False)


def instance_rendered(*, image_sets: list[ImageSet], study_uid: str, series_uid: str, sop_uid: str,
                      frame_numbers: list[int] | None, rendition: Rendition) -> RenderedBody:
    """An instance's first frame, or the frames listed, rendered."""
    view, instance = _instance(_views(image_sets, study_uid), series_uid, sop_uid)
    numbers = frame_numbers or [1]
    if not instance.frame_ids:
        raise NotFound("That instance has no frames to render")
    if max(numbers) > len(instance.frame_ids):
        raise NotFound(f"The instance has {len(instance.frame_ids)} frames")
    choices = [FrameChoice(view, instance, number) for number in numbers]
    if len(choices) > 1 and not (rendition.multipart or rendition.any_form):
        raise NotAcceptable(f'Several frames are sent as multipart/related; type="{rendition.media_type}"')
    _touch(image_sets, [view])
    if len(choices) > 1 or rendition.multipart:
        return _multipart(choices, rendition, thumbnail=False)
    return _single(choices[0], rendition, thumbnail=False)


def thumbnail_image(*, image_sets: list[ImageSet], study_uid: str, series_uid: str | None = None,
                    sop_uid: str | None = None, frame_number: int | None = None,
                    rendition: Rendition) -> RenderedBody:
    """One small image of the representative frame of a study, series, instance or the frame named."""
    views = _views(image_sets, study_uid)
    if sop_uid is None:
        choice = _representative(views, series_uid)
        _touch(image_sets, [choice.view])
        if rendition.is_default and not rendition.multipart:
            # The viewer's own series thumbnail: the same frame and size, kept per image set version.
            body = render_frames.series_thumbnail(view=choice.view, series_uid=choice.instance.series_uid)
            return RenderedBody(media_type=rendition.media_type, image=body)
        return _single(choice, rendition, thumbnail=True)
    assert series_uid is not None
    view, instance = _instance(views, series_uid, sop_uid)
    if not instance.frame_ids:
        raise NotFound("That instance has no frames to render")
    number = frame_number or len(instance.frame_ids) // 2 + 1
    if number > len(instance.frame_ids):
        raise NotFound(f"The instance has {len(instance.frame_ids)} frames")
    _touch(image_sets, [view])
    return _single(FrameChoice(view, instance, number), rendition, thumbnail=True)
