"""The per-file part of an import (SPEC 4.3), run in worker processes; no Django.

read -> check -> normalize -> for each frame: decode the source, encode lossless HTJ2K, decode the result again
with an independent decoder (OpenJPEG) and compare, compute checksums and statistics. The result carries the
encoded frames and the instance's normalized metadata back to the job driver, which stores them; a file that fails
any step yields a failure and nothing of it is kept.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imaging.codecs import htj2k, openjpeg_check, registry
from imaging.codecs.dataset_pixels import (
    PixelDataError,
    check_frame_count,
    check_frame_headers,
    check_native_length,
    describe,
    is_decoder_panic,
    iter_decoded_frames,
    native_frame_bytes,
)
from imaging.codecs.description import PixelDescription
from imaging.codecs.ifrc import frame_checksums
from imaging.dicom import uids
from imaging.dicom.levels import grouping_of
from imaging.dicom.normalize import normalize_dataset
from imaging.dicom.reader import DEFAULT_LIMITS, DecodeLimits, DicomInputError, check_instance, read_p10, text_of
from imaging.pipeline.sources import S3Settings, SourceError, read_object

# Worker processes must not echo DICOM values (patient data) into logs: pydicom's value warnings are silenced.
import pydicom.config  # noqa: E402

pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
logging.getLogger("pydicom").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="pydicom")

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
WARNING_TYPES = {
    0xB000: "CoercionOfDataElements",
    0xB110: "FramesExtractionFailure",
    0xB201: "InvalidUidFormat",
    0xB202: "InvalidDicomValueLength",
}


@dataclass
class EncodedFrame:
    frame_id: str
    data: bytes
    size: int = 0


@dataclass
class FileResult:
    input_file: str
    ok: bool = False
    exception_type: str = ""
    message: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    instance_number: int | None = None
    levels: dict[str, dict[str, Any]] = field(default_factory=dict)
    level_vrs: dict[str, dict[str, str]] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)
    frames: list[EncodedFrame] = field(default_factory=list)
    grouping: tuple[str, ...] = ()
    warnings: list[dict[str, Any]] = field(default_factory=list)
    source_bytes: int = 0

    def fail(self, exception_type: str, message: str) -> "FileResult":
        self.ok, self.exception_type, self.message = False, exception_type, message
        self.frames, self.levels, self.instance = [], {}, {}
        return self


def frame_blob_key(datastore_id: str, frame_id: str) -> str:
    return f"datastores/{datastore_id}/frames/{frame_id[:2]}/{frame_id}"


class FrameIds:
    """Frame ids of one file: derived from (job, input object, frame index) when a job is known, so a job that is
    run again after a crash, or a file retried after its worker died, writes the same blobs again instead of
    leaving the first attempt's frames behind; random otherwise."""

    def __init__(self, job_id: str = "", source: str = "") -> None:
        self.seed = f"{job_id}\0{source}\0" if job_id else ""

    def __call__(self, index: int) -> str:
        if not self.seed:
            return uuid.uuid4().hex
        return hashlib.sha256(f"{self.seed}{index}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class FrameSink:
    """Where a worker writes the frames of a file that processed cleanly: the blob store, the data store, and the
    job whose files these are."""

    blob_store_url: str
    blob_store_s3: tuple[str, str, str, str]
    datastore_id: str
    job_id: str = ""


def process_source(uri: str, display_name: str, s3: S3Settings, storage_format: str,
                   sink: FrameSink | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> FileResult:
    """Read one object, run it through the pipeline and store its frames; never raises.

    Frames are written only once the whole file has been processed and verified, and their bytes are then dropped
    from the result, so only metadata travels back to the job driver.
    """
    result = FileResult(input_file=display_name)
    try:
        data = read_object(uri, s3)
    except SourceError as e:
        return result.fail("ValidationException", str(e))
    frame_ids = FrameIds(sink.job_id, uri) if sink is not None else FrameIds()
    result = process_bytes(data, result, storage_format=storage_format, frame_ids=frame_ids, limits=limits)
    if result.ok and sink is not None:
        from imaging.storage import BlobStoreError, open_blob_store

        store = open_blob_store(sink.blob_store_url, sink.blob_store_s3)
        written: list[str] = []
        try:
            for frame in result.frames:
                key = frame_blob_key(sink.datastore_id, frame.frame_id)
                store.put(key, frame.data)
                written.append(key)
                frame.size, frame.data = len(frame.data), b""
        except BlobStoreError:
            for key in written:
                store.delete(key)
            return result.fail("InternalServerException", "The frames could not be stored")
    return result


def process_bytes(data: bytes, result: FileResult, *, storage_format: str = "HTJ2K",
                  frame_ids: FrameIds | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> FileResult:
    """One file through SPEC 4.3. The search-key length limits (4.6) are left to the job driver
    (json_metadata.finish_instance), which checks them once the job's JSON metadata has been applied."""
    result.source_bytes = len(data)
    try:
        dataset = read_p10(data, limits)
        transfer_syntax = str(dataset.file_meta.TransferSyntaxUID)
        notes = normalize_dataset(dataset)
        values = {**notes.levels["Patient"], **notes.levels["Study"], **notes.levels["Series"],
                  **notes.levels["Instance"]}
        check_instance(values, notes.unreadable)
        description = describe(dataset, transfer_syntax)
        frames, frame_infos, stored_syntax = _frames(dataset, description, storage_format, frame_ids or FrameIds())
    except DicomInputError as e:
        return result.fail("InternalServerException" if e.server_fault else "ValidationException", e.message)
    except PixelDataError as e:
        return result.fail("ValidationException", str(e))
    except VerificationError as e:
        return result.fail("InternalServerException", str(e))
    except BaseException as e:  # a decoder or encoder crash on odd input is still this file's failure, not the job's
        if not isinstance(e, Exception) and not is_decoder_panic(e):
            raise
        return result.fail("InternalServerException", f"Unexpected error while processing the file: {type(e).__name__}")

    instance = dict(notes.levels["Instance"])
    result.study_uid = text_of(values["StudyInstanceUID"]).strip()
    result.series_uid = text_of(values["SeriesInstanceUID"]).strip()
    result.sop_uid = text_of(values["SOPInstanceUID"]).strip()
    result.instance_number = _integer(values.get("InstanceNumber"))
    node: dict[str, Any] = {"DICOM": instance}
    if notes.vrs["Instance"]:
        node["DICOMVRs"] = notes.vrs["Instance"]
    if description is not None:
        node["StoredTransferSyntaxUID"] = stored_syntax
        node["ImageFrames"] = frame_infos
    result.instance = node
    result.levels = {level: notes.levels[level] for level in ("Patient", "Study", "Series")}
    result.level_vrs = {level: notes.vrs[level] for level in ("Patient", "Study", "Series") if notes.vrs[level]}
    result.grouping = grouping_of(values)
    result.frames = frames
    try:
        json.dumps([result.levels, result.instance])
    except (TypeError, ValueError):
        return result.fail("InternalServerException", "The metadata cannot be represented as JSON")
    if notes.too_long:
        result.warnings.append(_warning(0xB202, f"Values longer than their VR allows: {', '.join(notes.too_long[:10])}"))
    bad_uids = [name for name, uid in (("StudyInstanceUID", result.study_uid), ("SeriesInstanceUID", result.series_uid),
                                       ("SOPInstanceUID", result.sop_uid)) if len(uid) > 64 or not _UID.fullmatch(uid)]
    if bad_uids:
        result.warnings.append(_warning(0xB201, f"UIDs that violate the UI VR: {', '.join(bad_uids)}"))
    if notes.unreadable:
        result.warnings.append(_warning(0xB000, f"Elements kept as raw bytes: {', '.join(notes.unreadable[:10])}"))
    result.ok = True
    return result


def _integer(value: Any) -> int | None:
    """An IS value ("12", " 12", "12.0") as an int; None when absent, several or not a number."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if math.isfinite(number) and number == int(number) else None


def _warning(code: int, message: str) -> dict[str, Any]:
    return {"warning_reason_code": code, "type": WARNING_TYPES.get(code, "Other"), "message": message}


class VerificationError(Exception):
    """The encoded frame does not decode back to the source pixels."""


def _frames(dataset, description: PixelDescription | None, storage_format: str, frame_ids: FrameIds):
    if description is None:
        return [], [], None
    check_native_length(dataset, description)
    encapsulated = check_frame_headers(dataset, description)
    if description.stored_as_received:
        if description.transfer_syntax in uids.AS_RECEIVED:
            blobs, stored = check_frame_count(encapsulated or [], description), description.transfer_syntax
        else:
            blobs, stored = native_frame_bytes(dataset, description), uids.EXPLICIT_LE
        frames = [EncodedFrame(frame_ids(index), blob) for index, blob in enumerate(blobs)]
        infos = [{"ID": f.frame_id, "FrameSizeInBytes": description.frame_size_in_bytes} for f in frames]
        return frames, infos, stored
    frames, infos = [], []
    for index, source in enumerate(iter_decoded_frames(dataset, description)):
        frame, info = encode_verified(source, description, storage_format, frame_id=frame_ids(index))
        frames.append(frame)
        infos.append(info)
    if len(frames) != description.number_of_frames:
        raise PixelDataError(f"NumberOfFrames is {description.number_of_frames} but {len(frames)} frames were decoded")
    stored = uids.J2K_LOSSLESS if storage_format == "JPEG_2000_LOSSLESS" else uids.HTJ2K_LOSSLESS_RPCL
    return frames, infos, stored


def encode_verified(source: np.ndarray, description: PixelDescription, storage_format: str = "HTJ2K",
                    frame_id: str = ""):
    """Encode one frame, prove it decodes to the same samples with OpenJPEG, and describe it."""
    rgb = description.samples_per_pixel == 3 and description.photometric in ("RGB", "YBR_RCT", "YBR_ICT")
    stored = uids.J2K_LOSSLESS if storage_format == "JPEG_2000_LOSSLESS" else uids.HTJ2K_LOSSLESS_RPCL
    codestream = registry.frame_encode(source, transfer_syntax=stored, rgb=rgb)
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
