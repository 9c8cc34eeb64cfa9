"""WADO-RS retrievals (SPEC 11.3): study and series as multipart P10, metadata as DICOM JSON, frames, bulk data.

Which image sets a request reads: the primary ones of the study (or the series), or the one `imageSetId` pins, in
which the UIDs must then exist. Callers authorize the action on every image set returned before reading from it.

Speed. Metadata and frames are what a viewer asks for most, many times per series:
* Series metadata is kept serialized, one JSON object (bytes) per instance, per image set version, series and
  base URL (BulkDataURIs are absolute), in a process-wide LRU cache bounded by bytes; a warm request joins them.
  Cold, the document is decoded once and converted by `imaging.dicom.json_model` (no pydicom Dataset).
* Frames need only a little of the document (each instance's frame ids, stored syntax and pixel description) and
  the blob key of each frame: both are kept per image set version in a small LRU cache (`VersionIndex`), so a
  warm frame request reads the frame's blob and nothing else.
A version's content never changes (a metadata update makes a new version), so neither cache needs invalidation;
keys carry the version, and a deleted image set is refused before the caches are consulted. The caches are
guarded by one lock: cachetools caches are not thread-safe, and ASGI serves sync views from several threads.

Study and series retrieval settle everything that needs the database first (image sets, documents, frame rows)
and then build each instance's file as it is sent, reading one frame at a time (imaging.services.instances).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from cachetools import LRUCache

from imaging.codecs import registry
from imaging.codecs.base import CodecError, UnsupportedTransferSyntax
from imaging.codecs.description import PixelDescription, decoded_photometric
from imaging.dicom import uids
from imaging.dicom.document import decode_document
from imaging.dicom.json_model import bulk_paths, merged_instance, to_dicom_json
from imaging.dicom.multipart import MediaRange, Part, accept_entries
from imaging.dicom.rebuild import instance_dataset
from imaging.errors import NotAcceptable, NotFound, ValidationFailed
from imaging.models import ImageSet, ImageSetState
from imaging.services.datastores import datastore_require_active
from imaging.services.imagesets import imageset_touch
from imaging.services.instances import (
    FrameBlob,
    frame_blobs_in_order,
    image_set_frame_blobs,
    instance_image_set,
    instance_p10_stream,
    lossless_syntax,
    native_frame,
    syntax_of,
)
from imaging.storage import BlobStoreError, blob_store

METADATA_CACHE_BYTES = 256 * 1024 * 1024
# Per-version indexes are weighed by what they hold (a frame blob row and an instance entry are a few hundred bytes
# of Python objects each), so an image set of 100,000 frames counts as much as it weighs, not as one entry.
VERSION_INDEX_BYTES = 64 * 1024 * 1024
INDEX_BYTES_PER_FRAME = 400
INDEX_BYTES_PER_INSTANCE = 800
MAX_FRAMES_PER_REQUEST = 10_000
OCTET_STREAM = "application/octet-stream"
DICOM = "application/dicom"
# Media types a client may name for HTJ2K and JPEG 2000 frames, and the one a part is sent as.
HTJ2K_MEDIA = {"image/jphc", "image/jph"}
J2K_MEDIA = {"image/jp2", "image/j2c"}

_lock = threading.Lock()
_metadata_cache: LRUCache = LRUCache(maxsize=METADATA_CACHE_BYTES, getsizeof=lambda entry: entry.size)
_index_cache: LRUCache = LRUCache(maxsize=VERSION_INDEX_BYTES, getsizeof=lambda index: index.size)


def _cached(cache: LRUCache, key: Any, build: Callable[[], Any]) -> Any:
    """The cached value of `key`, built outside the lock on a miss (two threads may both build it; either is
    right, since a version never changes)."""
    with _lock:
        found = cache.get(key)
    if found is not None:
        return found
    value = build()
    with _lock:
        try:
            cache[key] = value
        except ValueError:  # larger than the whole cache: served, not kept
            pass
    return value


def wado_caches_clear() -> None:
    """Forget every cached metadata and index (tests; a process that changed blobs behind the store's back)."""
    with _lock:
        _metadata_cache.clear()
        _index_cache.clear()


# --- Which image sets a request reads ---


def study_image_sets(*, datastore_id: str, study_uid: str, image_set_id: str | None) -> list[ImageSet]:
    """The primary image sets of the study, in series order, or the pinned one if it holds the study."""
    datastore_require_active(datastore_id=datastore_id)
    queryset = ImageSet.objects.filter(datastore_id=datastore_id).exclude(state=ImageSetState.DELETED)
    if image_set_id:
        image_sets = list(queryset.filter(pk=image_set_id, study_instance_uid=study_uid))
    else:
        image_sets = list(queryset.filter(study_instance_uid=study_uid, is_primary=True).order_by(
            "series_instance_uid", "id"))
    if not image_sets:
        raise NotFound("No image set holds that study")
    return image_sets


def series_image_set(*, datastore_id: str, study_uid: str, series_uid: str, image_set_id: str | None) -> ImageSet:
    """The image set a series (or instance) request reads (imaging.services.instances.instance_image_set)."""
    return instance_image_set(datastore_id=datastore_id, study_uid=study_uid, series_uid=series_uid,
                              image_set_id=image_set_id)


def image_set_document(image_set: ImageSet) -> dict[str, Any]:
    """The metadata document of the image set's current version; BlobStoreError when its blob is missing."""
    version = image_set.versions.filter(version=image_set.content_version).first()
    blob = blob_store().get(version.metadata_key) if version is not None else None
    if blob is None:
        raise BlobStoreError(f"metadata blob of version {image_set.content_version} is missing")
    return decode_document(blob)


def _series_node(document: dict[str, Any], study_uid: str, series_uid: str) -> dict[str, Any]:
    if str(document.get("Study", {}).get("DICOM", {}).get("StudyInstanceUID", "")) != study_uid:
        raise NotFound("That study is not in the image set")
    series = document.get("Study", {}).get("Series", {}).get(series_uid)
    if series is None:
        raise NotFound("That series is not in the image set")
    return series


def _instance_order(item: tuple[str, dict[str, Any]]) -> tuple[int, int, str]:
    number = item[1].get("DICOM", {}).get("InstanceNumber")
    try:
        value = int(str(number).strip())
    except (TypeError, ValueError):
        return (1, 0, item[0])
    return (0, value, item[0])


def _ordered_instances(series: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(series.get("Instances", {}).items(), key=_instance_order)


# --- Metadata ---


def bulkdata_hash(sop_uid: str, tag_path: str) -> str:
    """The opaque name of one binary value in bulk data URIs: MD5 of `sop/tagpath` (SPEC 11.3)."""
    return hashlib.md5(f"{sop_uid}/{tag_path}".encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class SeriesMetadata:
    """One series' instances as DICOM JSON objects (serialized), in InstanceNumber order."""

    objects: dict[str, bytes]  # by SOP Instance UID

    @property
    def size(self) -> int:
        return sum(len(sop) + len(data) + 100 for sop, data in self.objects.items())


def _instance_objects(document: dict[str, Any], series: dict[str, Any], series_url: str) -> dict[str, bytes]:
    """Each instance of the series as serialized DICOM JSON, in InstanceNumber order.

    The Patient, Study and Series attributes are shared by every instance: they are converted once (per value
    of PixelRepresentation, which decides the US-or-SS VRs) and each instance's own attributes are converted
    and laid over them, as merging the levels first would (an instance's value wins). Where a shared value is
    bulk data its URI names the instance, so such a series is converted instance by instance."""
    shared_values, shared_vrs = merged_instance([document.get("Patient", {}), document.get("Study", {}), series])
    shared_json: dict[bool, dict[str, Any] | None] = {}
    objects: dict[str, bytes] = {}
    for sop_uid, instance in _ordered_instances(series):
        instance_url = f"{series_url}/instances/{sop_uid}"

        def bulk_uri(path: str, sop_uid: str = sop_uid, instance_url: str = instance_url) -> str:
            return f"{instance_url}/bulkdata/{bulkdata_hash(sop_uid, path)}"

        own = dict(instance.get("DICOM", {}))
        own.update(_served_overrides({**shared_values, **own}, instance))
        vrs = {**shared_vrs, **instance.get("DICOMVRs", {})}
        signed = own.get("PixelRepresentation", shared_values.get("PixelRepresentation")) == 1
        if signed not in shared_json:
            shared_json[signed] = _shared_json(shared_values, shared_vrs, signed)
        shared = shared_json[signed]
        if shared is None:
            attributes = to_dicom_json({**shared_values, **own}, vrs, bulk_uri=bulk_uri, signed=signed)
        else:
            attributes = dict(sorted({**shared, **to_dicom_json(own, vrs, bulk_uri=bulk_uri, signed=signed)}.items()))
        objects[sop_uid] = json.dumps(attributes, ensure_ascii=False, separators=(",", ":"),
                                      allow_nan=False).encode("utf-8")
    return objects


def _shared_json(values: dict[str, Any], vrs: dict[str, str], signed: bool) -> dict[str, Any] | None:
    """The shared levels' attributes, or None when one of them is bulk data (its URI depends on the instance)."""
    bulk: list[str] = []
    converted = to_dicom_json(values, vrs, bulk_uri=lambda path: bulk.append(path) or "", signed=signed)
    return None if bulk else converted


def _served_overrides(values: dict[str, Any], instance: dict[str, Any]) -> dict[str, Any]:
    """The attributes as frames and files are served: frames the store transcoded losslessly decode to
    interleaved samples in the decoded photometric interpretation (as GetDICOMInstance writes them)."""
    stored = instance.get("StoredTransferSyntaxUID")
    overrides: dict[str, Any] = {}
    if instance.get("ImageFrames") and stored != uids.EXPLICIT_LE and lossless_syntax(stored):
        if values.get("PhotometricInterpretation"):
            overrides["PhotometricInterpretation"] = decoded_photometric(str(values["PhotometricInterpretation"]))
        if "PlanarConfiguration" in values and int(values.get("SamplesPerPixel") or 1) > 1:
            overrides["PlanarConfiguration"] = 0
    return overrides


def _series_metadata(image_set: ImageSet, study_uid: str, series_uid: str, base_url: str) -> SeriesMetadata:
    def build() -> SeriesMetadata:
        document = image_set_document(image_set)
        series = _series_node(document, study_uid, series_uid)
        return SeriesMetadata(_instance_objects(document, series, f"{base_url}/studies/{study_uid}/series/"
                                                                  f"{series_uid}"))

    return _cached(_metadata_cache, ("metadata", image_set.pk, image_set.content_version, series_uid, base_url),
                   build)


def json_array(objects: list[bytes]) -> bytes:
    return b"[" + b",".join(objects) + b"]"


def series_metadata_get(*, image_set: ImageSet, study_uid: str, series_uid: str, base_url: str) -> bytes:
    """GetDICOMSeriesMetadata: a DICOM JSON array, one object per instance of the series in the image set."""
    metadata = _series_metadata(image_set, study_uid, series_uid, base_url)
    imageset_touch(image_set=image_set)
    return json_array(list(metadata.objects.values()))


def study_metadata_get(*, image_sets: list[ImageSet], study_uid: str, base_url: str) -> bytes:
    """GetDICOMStudyMetadata: every instance of every series of the study's image sets."""
    objects: list[bytes] = []
    for image_set in image_sets:
        for series_uid in _series_of(image_set):
            objects += _series_metadata(image_set, study_uid, series_uid, base_url).objects.values()
        imageset_touch(image_set=image_set)
    return json_array(objects)


def _series_of(image_set: ImageSet) -> list[str]:
    """The series an image set holds: one for a grouped image set; read from the index when it may hold more."""
    return sorted(_version_index(image_set).series)


def instance_metadata_get(*, image_set: ImageSet, study_uid: str, series_uid: str, sop_uid: str,
                          base_url: str) -> bytes:
    """GetDICOMInstanceMetadata: an array of one object."""
    metadata = _series_metadata(image_set, study_uid, series_uid, base_url)
    found = metadata.objects.get(sop_uid)
    if found is None:
        raise NotFound("That instance is not in the series")
    imageset_touch(image_set=image_set)
    return json_array([found])


# --- The per-version index frames and bulk data are served from ---


@dataclass(frozen=True)
class InstanceFrames:
    """What serving one instance's frames needs, without its metadata document."""

    study_uid: str
    series_uid: str
    stored_syntax: str
    frame_ids: tuple[str, ...]
    description: PixelDescription | None  # None: no pixel data

    @property
    def native_frame_size(self) -> int:
        d = self.description
        assert d is not None
        return d.rows * d.columns * d.samples_per_pixel * (1 if d.bits_allocated <= 8 else 2)


@dataclass(frozen=True)
class VersionIndex:
    instances: dict[str, InstanceFrames]  # by SOP Instance UID
    blobs: dict[str, FrameBlob]  # by frame id
    series: frozenset[str]

    @property
    def size(self) -> int:
        """About how many bytes the index holds (see VERSION_INDEX_BYTES)."""
        return len(self.blobs) * INDEX_BYTES_PER_FRAME + len(self.instances) * INDEX_BYTES_PER_INSTANCE + 1024


def _description(values: dict[str, Any], stored: str) -> PixelDescription | None:
    try:
        bits_allocated = int(values.get("BitsAllocated") or 16)
        return PixelDescription(
            rows=int(values["Rows"]), columns=int(values["Columns"]),
            samples_per_pixel=int(values.get("SamplesPerPixel") or 1), bits_allocated=bits_allocated,
            bits_stored=bits_allocated, signed=int(values.get("PixelRepresentation") or 0) == 1,
            photometric=str(values.get("PhotometricInterpretation") or ""), transfer_syntax=stored,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _version_index(image_set: ImageSet) -> VersionIndex:
    def build() -> VersionIndex:
        document = image_set_document(image_set)
        study_values = {**document.get("Patient", {}).get("DICOM", {}), **document.get("Study", {}).get("DICOM", {})}
        study_uid = str(study_values.get("StudyInstanceUID", ""))
        instances: dict[str, InstanceFrames] = {}
        for series_uid, series in document.get("Study", {}).get("Series", {}).items():
            for sop_uid, instance in series.get("Instances", {}).items():
                stored = instance.get("StoredTransferSyntaxUID") or uids.HTJ2K_LOSSLESS_RPCL
                frame_ids = tuple(frame["ID"] for frame in instance.get("ImageFrames", []) if "ID" in frame)
                values = {**study_values, **series.get("DICOM", {}), **instance.get("DICOM", {})}
                instances[sop_uid] = InstanceFrames(study_uid, series_uid, stored, frame_ids,
                                                    _description(values, stored) if frame_ids else None)
        series_uids = frozenset(document.get("Study", {}).get("Series", {}))
        return VersionIndex(instances, image_set_frame_blobs(image_set), series_uids)

    return _cached(_index_cache, ("index", image_set.pk, image_set.content_version), build)


def _indexed_instance(image_set: ImageSet, study_uid: str, series_uid: str, sop_uid: str) -> InstanceFrames:
    found = _version_index(image_set).instances.get(sop_uid)
    if found is None or found.series_uid != series_uid or found.study_uid != study_uid:
        raise NotFound("That instance is not in the image set")
    return found


# --- Frames ---


def frame_numbers_parse(frame_list: str) -> list[int]:
    """`1,3,2` as [1, 3, 2]: 1-based, no duplicates; anything else is a ValidationFailed naming the entry."""
    numbers: list[int] = []
    seen: set[int] = set()
    for entry in frame_list.split(","):
        entry = entry.strip()
        if not re.fullmatch(r"[0-9]{1,9}", entry):
            raise ValidationFailed(f"frame numbers are positive integers, not {entry[:20]!r}")
        number = int(entry)
        if number == 0:
            raise ValidationFailed("frame numbers start at 1")
        if number in seen:
            raise ValidationFailed(f"frame {number} is asked for twice")
        seen.add(number)
        numbers.append(number)
    if len(numbers) > MAX_FRAMES_PER_REQUEST:
        raise ValidationFailed(f"at most {MAX_FRAMES_PER_REQUEST} frames per request")
    return numbers


@dataclass(frozen=True)
class FrameChoice:
    """How the frames of one request are sent: media type and syntax of each part, and how they are made."""

    media_type: str
    transfer_syntax: str
    make: str  # "stored": the blob as is; "native": decoded samples; "j2k": transcoded to JPEG 2000 lossless


def frame_choice(accept: str | None, stored: str) -> FrameChoice:
    """The first entry of the Accept list the store can serve for frames stored as `stored` (SPEC 11.3)."""
    entries = accept_entries(accept) or [MediaRange("multipart/related", {"type": OCTET_STREAM})]
    for entry in entries:
        choice = _frame_choice(entry, stored)
        if choice is not None:
            return choice
    raise NotAcceptable(f"None of the accepted media types can be served for frames stored as {stored}")


def _frame_choice(entry: MediaRange, stored: str) -> FrameChoice | None:
    if entry.media_type == "multipart/related":
        media, syntax = entry.part_type or OCTET_STREAM, entry.transfer_syntax
    elif entry.media_type == "*/*":
        media, syntax = "*/*", entry.transfer_syntax
    else:
        media, syntax = entry.media_type, entry.transfer_syntax  # a bare part type, as some clients send
    stored_media = _stored_media(stored)
    if syntax == "*":
        return FrameChoice(stored_media, stored, "stored")
    if media in (OCTET_STREAM, "*/*", "application/*") and syntax in (None, uids.EXPLICIT_LE):
        if stored == uids.EXPLICIT_LE:
            return FrameChoice(OCTET_STREAM, uids.EXPLICIT_LE, "stored")
        if lossless_syntax(stored):
            return FrameChoice(OCTET_STREAM, uids.EXPLICIT_LE, "native")
        return FrameChoice(stored_media, stored, "stored") if media == "*/*" and syntax is None else None
    if media in HTJ2K_MEDIA | {"image/*", "*/*"} and syntax in (None, uids.HTJ2K_LOSSLESS_RPCL) \
            and stored == uids.HTJ2K_LOSSLESS_RPCL and (media in HTJ2K_MEDIA or syntax):
        return FrameChoice("image/jphc", stored, "stored")
    if media in J2K_MEDIA | {"image/*", "*/*"} and syntax in (None, uids.J2K_LOSSLESS) and (
            media in J2K_MEDIA or syntax):
        part_media = media if media in J2K_MEDIA else "image/jp2"
        if stored == uids.J2K_LOSSLESS:
            return FrameChoice(part_media, stored, "stored")
        if lossless_syntax(stored) and registry.can_encode(uids.J2K_LOSSLESS):
            return FrameChoice(part_media, uids.J2K_LOSSLESS, "j2k")
        return None
    if syntax is not None and syntax == stored and media in (stored_media, "image/*", "*/*", OCTET_STREAM):
        return FrameChoice(stored_media, stored, "stored")
    return None


def _stored_media(stored: str) -> str:
    """The media type of a frame sent as stored: image/jphc for HTJ2K (SPEC 11.3), else the codec registry's."""
    if stored == uids.EXPLICIT_LE:
        return OCTET_STREAM
    if stored in (uids.HTJ2K_LOSSLESS, uids.HTJ2K_LOSSLESS_RPCL, uids.HTJ2K):
        return "image/jphc"
    return registry.frame_media_type(stored)


@dataclass
class FramesResponse:
    """The frames to send: each part's Content-Type, the parts, and their total length where known."""

    media_type: str
    transfer_syntax: str
    part_content_type: str
    parts: Iterator[bytes]  # one bytes object per frame, made when its turn comes
    sizes: list[int] | None


def frames_get(*, image_set: ImageSet, study_uid: str, series_uid: str, sop_uid: str, frame_list: str,
               accept: str | None) -> FramesResponse:
    """GetDICOMInstanceFrames: the frames asked for, in request order, as negotiated."""
    numbers = frame_numbers_parse(frame_list)
    instance = _indexed_instance(image_set, study_uid, series_uid, sop_uid)
    if not instance.frame_ids or instance.description is None:
        raise NotFound("That instance has no frames")
    too_high = [number for number in numbers if number > len(instance.frame_ids)]
    if too_high:
        raise NotFound(f"Frame {too_high[0]} is above NumberOfFrames ({len(instance.frame_ids)})")
    choice = frame_choice(accept, instance.stored_syntax)
    blobs = frame_blobs_in_order(_version_index(image_set).blobs, [instance.frame_ids[n - 1] for n in numbers])
    imageset_touch(image_set=image_set)
    if choice.make == "stored" and all(blob.size for blob in blobs):
        sizes: list[int] | None = [blob.size for blob in blobs]
    elif choice.make == "native":
        sizes = [instance.native_frame_size] * len(blobs)
    else:
        sizes = None
    part_type = f"{choice.media_type}; transfer-syntax={choice.transfer_syntax}"
    return FramesResponse(choice.media_type, choice.transfer_syntax, part_type,
                          _frames(blobs, choice, instance.description), sizes)


def _frames(blobs: list[FrameBlob], choice: FrameChoice, description: PixelDescription) -> Iterator[bytes]:
    store = blob_store()
    for blob in blobs:
        data = store.get(blob.key)
        if data is None:
            raise BlobStoreError("a frame of the instance is missing")
        if choice.make == "native":
            yield native_frame(data, description)
        elif choice.make == "j2k":
            yield _as_jpeg2000(data, description)
        else:
            yield data


def _as_jpeg2000(data: bytes, description: PixelDescription) -> bytes:
    """A losslessly stored frame transcoded to JPEG 2000 lossless (5/3 wavelet): the same samples."""
    try:
        samples = registry.frame_decode(data, description)
        rgb = samples.ndim == 3 and description.photometric in ("RGB", "YBR_RCT", "YBR_ICT", "YBR_FULL")
        return registry.frame_encode(samples, transfer_syntax=uids.J2K_LOSSLESS, rgb=rgb)
    except (CodecError, UnsupportedTransferSyntax) as e:
        raise BlobStoreError(f"a frame could not be transcoded: {e}") from e


# --- Bulk data ---


def bulkdata_get(*, image_set: ImageSet, study_uid: str, series_uid: str, sop_uid: str, bulkdata_hash_: str
                 ) -> bytes:
    """GetDICOMBulkdata: the raw value of the instance's binary attribute whose tag path hashes to the name."""
    if not re.fullmatch(r"[0-9A-Fa-f]{32}", bulkdata_hash_):
        raise ValidationFailed("a bulk data name is 32 hexadecimal digits")
    wanted = bulkdata_hash_.lower()
    _indexed_instance(image_set, study_uid, series_uid, sop_uid)
    document = image_set_document(image_set)
    series = _series_node(document, study_uid, series_uid)
    instance = series.get("Instances", {}).get(sop_uid)
    if instance is None:
        raise NotFound("That instance is not in the image set")
    values, vrs = merged_instance([document.get("Patient", {}), document.get("Study", {}), series, instance])
    for tag_path, encoded in bulk_paths(values, vrs):
        if bulkdata_hash(sop_uid, tag_path) == wanted:
            imageset_touch(image_set=image_set)
            return base64.b64decode(encoded)
    raise NotFound("No bulk data of the instance has that name")


# --- Study and series retrieval ---


def dicom_syntax_wanted(accept: str | None) -> str | None:
    """The transfer syntax asked for a P10 retrieval (None: as stored); NotAcceptable for anything but
    application/dicom (as a part of multipart/related or bare)."""
    for entry in accept_entries(accept):
        if entry.media_type == "multipart/related" and entry.part_type not in (None, DICOM, "*/*", "application/*"):
            continue
        if entry.media_type not in ("multipart/related", DICOM, "*/*", "application/*"):
            continue
        syntax = entry.transfer_syntax or uids.EXPLICIT_LE
        return None if syntax == "*" else syntax
    if not accept:
        return uids.EXPLICIT_LE
    raise NotAcceptable("Only application/dicom parts can be served for a study or series")


def wants_multipart(accept: str | None) -> bool:
    """Whether the first servable entry of an instance Accept asks for multipart/related (SPEC 11.3)."""
    for entry in accept_entries(accept):
        if entry.media_type == "multipart/related":
            return entry.part_type in (None, DICOM)
        if entry.media_type in (DICOM, "*/*", "application/*"):
            return False
    return False


def instances_p10_parts(*, image_sets: list[ImageSet], study_uid: str, series_uid: str | None,
                        accept: str | None) -> tuple[Iterator[Part], str | None]:
    """GetDICOMStudy / GetDICOMSeries: one multipart part per instance (P10), and the transfer syntax all parts
    share (None where it is each instance's stored one). What needs the database is done here, and every
    instance is checked against the Accept header (406 before the first byte); the parts are built as they are
    iterated, one document, one instance and one frame at a time."""
    wanted = dicom_syntax_wanted(accept)
    work: list[tuple[ImageSet, str, list[str], dict[str, FrameBlob]]] = []
    for image_set in image_sets:
        version = image_set.versions.filter(version=image_set.content_version).first()
        if version is None:
            raise BlobStoreError(f"version {image_set.content_version} of an image set is missing")
        document = image_set_document(image_set)
        series_uids = [series_uid] if series_uid else sorted(document.get("Study", {}).get("Series", {}))
        for uid in series_uids:
            for _, instance in _ordered_instances(_series_node(document, study_uid, uid)):
                syntax_of(instance, wanted)
        work.append((image_set, version.metadata_key, series_uids, image_set_frame_blobs(image_set)))
        imageset_touch(image_set=image_set)
    return _p10_parts(work, wanted), wanted


def _p10_parts(work: list[tuple[ImageSet, str, list[str], dict[str, FrameBlob]]], wanted: str | None
               ) -> Iterator[Part]:
    """The parts, reading each image set's document again as its turn comes (blobs only, no database), so one
    document is held at a time."""
    store = blob_store()
    for _, metadata_key, series_uids, blobs in work:
        blob = store.get(metadata_key)
        if blob is None:
            raise BlobStoreError("a metadata blob went missing while the study was sent")
        document = decode_document(blob)
        for series_uid in series_uids:
            for sop_uid, instance in _ordered_instances(document["Study"]["Series"][series_uid]):
                dataset, _ = instance_dataset(document, series_uid, sop_uid)
                frame_ids = [frame["ID"] for frame in instance.get("ImageFrames", [])]
                streamed, syntax = instance_p10_stream(dataset=dataset, instance=instance, wanted=wanted,
                                                       frame_blobs=frame_blobs_in_order(blobs, frame_ids),
                                                       store=store)
                yield Part(f"{DICOM}; transfer-syntax={syntax}", streamed.parts)
