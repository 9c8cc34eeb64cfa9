"""Scrubbing stored frames for bit rot (issue 13 item 9): `manage.py verify_frames`.

Every frame the import transcoded carries, in its image set's metadata, the CRC-32 of its samples at each resolution
(`PixelDataChecksumFromBaseToFullResolution`, imaging.codecs.ifrc), computed from the source pixels that the stored
codestream was proven to decode to. Reading the blob back, decoding it and checksumming the full-resolution samples
again therefore proves the stored bytes still hold the image. Frames kept as received (lossy, uncompressed) have no
checksum: for them presence and the recorded size are checked.

A frame is bad when its blob is missing or unreadable, its size differs from the frame row's, it no longer decodes,
or its samples' checksum differs. Bad frames are named by image set and frame id, never by anything about the patient.
Each run is recorded as a FrameScrub row, which the data store's admin page shows.

Reads only: nothing is repaired (a bad frame needs the source file re-imported or a backup's copy restored).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

from django.db.models import QuerySet
from django.utils import timezone

from imaging.codecs import registry
from imaging.codecs.description import PixelDescription
from imaging.codecs.base import CodecError
from imaging.codecs.ifrc import crc32
from imaging.dicom.document import decode_document
from imaging.models import FrameScrub, ImageFrame, ImageSet, ImageSetState
from imaging.storage import BlobStoreError, blob_store

logger = logging.getLogger(__name__)

BAD_FRAMES_KEPT = 1000


@dataclass(frozen=True)
class FrameFacts:
    """What the metadata says about one frame: how to decode it and the checksum of its full resolution."""

    description: PixelDescription
    checksum: int | None


def _frame_facts(document: dict[str, Any]) -> dict[str, FrameFacts]:
    facts = {}
    for series in document.get("Study", {}).get("Series", {}).values():
        for node in series.get("Instances", {}).values():
            description = PixelDescription.from_dicom(node.get("DICOM", {}), node.get("StoredTransferSyntaxUID"))
            for frame in node.get("ImageFrames", []):
                levels = frame.get("PixelDataChecksumFromBaseToFullResolution") or []
                facts[frame["ID"]] = FrameFacts(description, levels[-1]["Checksum"] if levels else None)
    return facts


def _image_set_facts(image_set_id: str) -> dict[str, FrameFacts]:
    image_set = ImageSet.objects.get(pk=image_set_id)
    version = image_set.versions.filter(version=image_set.content_version).first()
    blob = blob_store().get(version.metadata_key) if version else None
    return _frame_facts(decode_document(blob)) if blob else {}


def _frames(datastore_id: str | None, sample: int | None) -> Iterator[ImageFrame]:
    """Frame rows of live image sets, grouped by image set (so each metadata document is read once)."""
    rows: QuerySet = ImageFrame.objects.exclude(image_set__state=ImageSetState.DELETED).only(
        "image_set_id", "frame_id", "blob_key", "size")
    if datastore_id:
        rows = rows.filter(image_set__datastore_id=datastore_id)
    if sample is not None:
        yield from sorted(rows.order_by("?")[:sample], key=lambda row: row.image_set_id)
        return
    yield from rows.order_by("image_set_id", "id").iterator(chunk_size=2000)


def frame_problem(row: ImageFrame, facts: FrameFacts | None) -> str | None:
    """Why this stored frame is bad, or None when it is sound."""
    try:
        frame_bytes = blob_store().get(row.blob_key)
    except BlobStoreError:
        return "unreadable"
    if frame_bytes is None:
        return "missing"
    if row.size and len(frame_bytes) != row.size:
        return "size"
    if facts is None or facts.checksum is None:
        return None
    try:
        samples = registry.frame_decode(frame_bytes, facts.description)
    except CodecError:  # FrameDecodeError, or a syntax no codec here reads any more
        return "undecodable"
    checksum = crc32(samples, bits_allocated=facts.description.bits_allocated, signed=facts.description.signed)
    return None if checksum == facts.checksum else "checksum"


def frames_verify(*, datastore_id: str | None = None, sample: int | None = None) -> FrameScrub:
    """Re-read the frames of one data store (or all), or a random `sample` of them, and record the run."""
    scrub = FrameScrub.objects.create(datastore_id=datastore_id or "", sample_size=sample)
    current_set, facts_by_frame = None, {}
    for row in _frames(datastore_id, sample):
        if row.image_set_id != current_set:
            current_set, facts_by_frame = row.image_set_id, _image_set_facts(row.image_set_id)
        facts = facts_by_frame.get(row.frame_id)
        problem = frame_problem(row, facts)
        scrub.frames_checked += 1
        if facts is None or facts.checksum is None:
            scrub.frames_without_checksum += 1
        if problem:
            scrub.frames_bad += 1
            logger.warning("frame scrub: image set %s frame %s is bad (%s)", row.image_set_id, row.frame_id, problem)
            if len(scrub.bad_frames) < BAD_FRAMES_KEPT:
                scrub.bad_frames.append({"imageSetId": row.image_set_id, "frameId": row.frame_id, "problem": problem})
    scrub.ended_at = timezone.now()
    scrub.save()
    return scrub


def scrub_latest(*, datastore_id: str) -> FrameScrub | None:
    """The last finished run that covered this data store (alone, or with every other)."""
    return FrameScrub.objects.filter(datastore_id__in=[datastore_id, ""], ended_at__isnull=False).first()
