"""The transcode and verify steps of the per-file pipeline (SPEC 4.3); no Django.

For each frame: decode the source, encode it lossless (HTJ2K, or JPEG 2000 when the data store asks for it),
decode the result again with an independent decoder (OpenJPEG) and compare, then compute checksums and
statistics. Frames stored as received (uids.AS_RECEIVED, and native pixel data) are only
checked and cut into frames. Reading, normalizing and storing are other modules' (see imaging/pipeline/process.py).
"""
from __future__ import annotations

import uuid

import numpy as np

from imaging.codecs import htj2k, openjpeg_check, registry
from imaging.codecs.dataset_pixels import (
    PixelDataError,
    check_frame_count,
    check_frame_headers,
    check_native_length,
    iter_decoded_frames,
    native_frame_bytes,
)
from imaging.codecs.description import PixelDescription
from imaging.codecs.ifrc import frame_checksums
from imaging.dicom import uids
from imaging.pipeline.results import EncodedFrame, FrameIds


class VerificationError(Exception):
    """The encoded frame does not decode back to the source pixels."""


def stored_syntax_for(storage_format: str) -> str:
    """The lossless transfer syntax a data store's storage format keeps transcoded frames in."""
    return uids.J2K_LOSSLESS if storage_format == "JPEG_2000_LOSSLESS" else uids.HTJ2K_LOSSLESS_RPCL


def transcode_frames(
    dataset, description: PixelDescription | None, storage_format: str, frame_ids: FrameIds
) -> tuple[list[EncodedFrame], list[dict], str | None]:
    """(frames, their ImageFrames entries, the stored transfer syntax) of one dataset; nothing without pixels."""
    if description is None:
        return [], [], None
    check_native_length(dataset, description)
    encapsulated = check_frame_headers(dataset, description)
    if description.stored_as_received:
        if description.transfer_syntax in uids.AS_RECEIVED:
            frame_bytes, stored = check_frame_count(encapsulated or [], description), description.transfer_syntax
        else:
            frame_bytes, stored = native_frame_bytes(dataset, description), uids.EXPLICIT_LE
        frames = [EncodedFrame(frame_ids(index), one_frame) for index, one_frame in enumerate(frame_bytes)]
        infos = [{"ID": f.frame_id, "FrameSizeInBytes": description.frame_size_in_bytes} for f in frames]
        return frames, infos, stored
    frames, infos = [], []
    for index, source in enumerate(iter_decoded_frames(dataset, description)):
        frame, info = encode_verified(source, description, storage_format, frame_id=frame_ids(index))
        frames.append(frame)
        infos.append(info)
    if len(frames) != description.number_of_frames:
        raise PixelDataError(f"NumberOfFrames is {description.number_of_frames} but {len(frames)} frames were decoded")
    return frames, infos, stored_syntax_for(storage_format)


def encode_verified(source: np.ndarray, description: PixelDescription, storage_format: str = "HTJ2K",
                    frame_id: str = ""):
    """Encode one frame, prove it decodes to the same samples with OpenJPEG, and describe it."""
    rgb = description.samples_per_pixel == 3 and description.photometric in ("RGB", "YBR_RCT", "YBR_ICT")
    codestream = registry.frame_encode(source, transfer_syntax=stored_syntax_for(storage_format), rgb=rgb)
    try:
        identical = openjpeg_check.decodes_to(codestream, source)
    except openjpeg_check.OpenJpegError as e:
        raise VerificationError(f"Pixel data verification failed: the encoded frame does not decode ({e})") from e
    if not identical:
        raise VerificationError("Pixel data verification failed: the encoded frame differs from the source pixels")
    minimum, maximum = (int(source.min()), int(source.max())) if source.size else (0, 0)
    # The codestream decodes to `source` (just proven), so its reduced resolutions are those of `source`.
    checksums = frame_checksums(
        source,
        levels=htj2k.codestream_levels(codestream),
        rct=rgb and source.ndim == 3,
        bits_allocated=description.bits_allocated,
        bits_stored=description.bits_stored,
        signed=description.signed,
        sample_bounds=(minimum, maximum),
    )
    frame = EncodedFrame(frame_id or uuid.uuid4().hex, codestream)
    info = {
        "ID": frame.frame_id,
        "FrameSizeInBytes": description.frame_size_in_bytes,
        "MinPixelValue": minimum,
        "MaxPixelValue": maximum,
        "PixelDataChecksumFromBaseToFullResolution": checksums,
    }
    return frame, info
