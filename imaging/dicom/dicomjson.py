"""DICOM JSON (PS3.18 Annex F) objects to the store's normalized metadata (SPEC 4.10, 5.2); no Django.

Used by JSON metadata import: a study's (or series') metadata file adds attributes to, or overrides those of, the
matching P10 instances. Values are shaped exactly as normalization shapes values read from a file: keywords as
keys (8 hex digits plus a `DICOMVRs` entry for private or unknown tags), PN as one string, IS/DS as strings, one
value a scalar and several a list, empty as null, sequences as lists of flat objects, binary as base64.
"""
from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from imaging.dicom.levels import level_of
from imaging.dicom.normalize import PIXEL_KEYWORDS, dictionary_fits, keyword_of

_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_VRS = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
        "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"}
_INTEGERS = {"US", "SS", "UL", "SL", "UV", "SV"}
_FLOATS = {"FL", "FD"}
_BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
# Attributes a metadata file may not set: the instance's identity and what only the pixel pipeline computes.
_REFUSED = {"SOPInstanceUID", "PixelData", "FloatPixelData", "DoubleFloatPixelData", "TransferSyntaxUID"}
MAX_DEPTH = 16


class DicomJsonError(ValueError):
    """The metadata file is not a DICOM JSON object the store can apply; the message says where."""


def levels_from_dicom_json(document: Any) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """({level: {key: value}}, {level: {key: VR}}) for a DICOM JSON object, each attribute at its SPEC 5.3 level."""
    if not isinstance(document, dict):
        raise DicomJsonError("the file must hold one DICOM JSON object (PS3.18 Annex F)")
    levels: dict[str, dict[str, Any]] = {"Patient": {}, "Study": {}, "Series": {}, "Instance": {}}
    vrs: dict[str, dict[str, str]] = {"Patient": {}, "Study": {}, "Series": {}, "Instance": {}}
    for tag, attribute in document.items():
        key, vr, needs_vr = _key(tag, attribute)
        if int(tag[:4], 16) == 0x0002:
            raise DicomJsonError(f"{tag}: File Meta Information cannot be imported from JSON")
        if key in _REFUSED:
            raise DicomJsonError(f"{tag}: {key} cannot be set by a metadata file")
        level = level_of(key)
        levels[level][key] = _value(tag, vr, attribute, 0)
        if needs_vr:
            vrs[level][key] = vr
    return levels, vrs


def _key(tag: Any, attribute: Any) -> tuple[str, str, bool]:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise DicomJsonError(f"{str(tag)[:20]!r} is not a tag of 8 hexadecimal digits")
    if not isinstance(attribute, dict):
        raise DicomJsonError(f"{tag}: each attribute must be an object with a vr")
    vr = attribute.get("vr")
    if not isinstance(vr, str) or vr not in _VRS:  # a list or an object is unhashable: TypeError, not a reason
        raise DicomJsonError(f"{tag}: unknown or missing vr {str(vr)[:8]!r}")
    number = int(tag, 16)
    keyword = "" if (number >> 16) & 1 else keyword_of(number)
    return (keyword, vr, not dictionary_fits(number, vr)) if keyword else (tag.upper(), vr, True)


def _value(tag: str, vr: str, attribute: dict[str, Any], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise DicomJsonError(f"{tag}: sequences nest more than {MAX_DEPTH} levels deep")
    if "BulkDataURI" in attribute:
        raise DicomJsonError(f"{tag}: BulkDataURI is not supported; give the value inline")
    if "InlineBinary" in attribute:
        if vr not in _BINARY:
            raise DicomJsonError(f"{tag}: InlineBinary is only for binary VRs, not {vr}")
        data = attribute["InlineBinary"]
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise DicomJsonError(f"{tag}: InlineBinary is not base64") from None
        return data or None
    values = attribute.get("Value")
    if values is None:
        return None
    if not isinstance(values, list):
        raise DicomJsonError(f"{tag}: Value must be an array")
    if vr == "SQ":
        items = [_item(tag, item, depth + 1) for item in values]
        return items or None
    if vr in _BINARY:
        raise DicomJsonError(f"{tag}: binary values are given as InlineBinary")
    items = [_scalar(tag, vr, item) for item in values]
    if not items:
        return None
    return items[0] if len(items) == 1 else items


def _item(tag: str, item: Any, depth: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise DicomJsonError(f"{tag}: sequence items must be objects")
    result: dict[str, Any] = {}
    vrs: dict[str, str] = {}
    for inner_tag, attribute in item.items():
        key, vr, needs_vr = _key(inner_tag, attribute)
        # Pixel data inside items (an icon image) is left out, as normalization leaves it out of a file's items.
        result[key] = None if key in PIXEL_KEYWORDS else _value(inner_tag, vr, attribute, depth)
        if needs_vr:
            vrs[key] = vr
    if vrs:
        result["DICOMVRs"] = vrs
    return result


def _scalar(tag: str, vr: str, value: Any) -> Any:
    if value is None:
        return None
    if vr == "PN":
        if isinstance(value, str):
            return value
        if not isinstance(value, dict):
            raise DicomJsonError(f"{tag}: a PN value is an object with Alphabetic, Ideographic or Phonetic")
        groups = [value.get(name) or "" for name in ("Alphabetic", "Ideographic", "Phonetic")]
        if not all(isinstance(group, str) for group in groups):
            raise DicomJsonError(f"{tag}: PN components must be strings")
        while groups and groups[-1] == "":
            groups.pop()
        return "=".join(groups)
    if vr in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DicomJsonError(f"{tag}: {vr} values must be integers")
        return value
    if vr in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DicomJsonError(f"{tag}: {vr} values must be numbers")
        return float(value) if math.isfinite(value) else None
    if vr in ("IS", "DS"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise DicomJsonError(f"{tag}: {vr} values must be numbers or numeric strings")
        if vr == "IS" and isinstance(value, float) and value.is_integer():
            value = int(value)
        return value.strip() if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    if vr == "AT":
        if not isinstance(value, str) or not _TAG.fullmatch(value):
            raise DicomJsonError(f"{tag}: AT values are 8 hexadecimal digits")
        return value.upper()
    if not isinstance(value, str):
        raise DicomJsonError(f"{tag}: {vr} values must be strings")
    return value
