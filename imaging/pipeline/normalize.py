"""The normalize step of the per-file pipeline: a read instance's normalized elements become the metadata the
job driver stores (its levels, its Instance node with frame information, grouping keys) and the warnings the
manifests report (SPEC 4.3, 4.5); no Django.

The elements themselves are normalized by imaging.dicom.normalize; this module only arranges and checks them.
The search-key length limits (SPEC 4.6) are not checked here but by the job driver (json_metadata.finish_instance),
once the job's JSON metadata has been applied.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from imaging.dicom.levels import grouping_of
from imaging.dicom.normalize import Normalized
from imaging.dicom.reader import text_of
from imaging.pipeline.results import EncodedFrame, FileResult

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
WARNING_TYPES = {
    0xB000: "CoercionOfDataElements",
    0xB110: "FramesExtractionFailure",
    0xB201: "InvalidUidFormat",
    0xB202: "InvalidDicomValueLength",
}


def flat_values(notes: Normalized) -> dict[str, Any]:
    """The instance's elements of every level in one mapping, for checks and grouping."""
    return {**notes.levels["Patient"], **notes.levels["Study"], **notes.levels["Series"], **notes.levels["Instance"]}


def instance_record(
    result: FileResult, notes: Normalized, values: dict[str, Any], *, has_pixels: bool,
    frames: list[EncodedFrame], frame_infos: list[dict[str, Any]], stored_syntax: str | None,
) -> FileResult:
    """Fill `result` with the instance's metadata and warnings; it fails when the metadata is not JSON."""
    instance = dict(notes.levels["Instance"])
    result.study_uid = text_of(values["StudyInstanceUID"]).strip()
    result.series_uid = text_of(values["SeriesInstanceUID"]).strip()
    result.sop_uid = text_of(values["SOPInstanceUID"]).strip()
    result.instance_number = _integer(values.get("InstanceNumber"))
    node: dict[str, Any] = {"DICOM": instance}
    if notes.vrs["Instance"]:
        node["DICOMVRs"] = notes.vrs["Instance"]
    if has_pixels:
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
