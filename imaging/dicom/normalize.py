"""A pydicom dataset to the store's normalized metadata (SPEC 5.2).

Keys are PS3.6 keywords, or 8 uppercase hex digits for private and unknown elements (their VR goes into a
sibling `DICOMVRs` map). PN is one string, IS/DS stay the strings as stored, binary numbers become JSON numbers,
one value is a scalar and several a list, empty elements are null, sequences recurse. Elements are placed at the
Patient, Study, Series or Instance level by imaging.dicom.levels.
"""
from __future__ import annotations

import base64
import math
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.datadict import keyword_for_tag
from pydicom.multival import MultiValue

from imaging.dicom.levels import level_of

BULK_THRESHOLD = 1024 * 1024
BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN", "OB or OW", "US or OW"}
INTEGER_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "US or SS"}
FLOAT_VRS = {"FL", "FD"}
PIXEL_KEYWORDS = {"PixelData", "FloatPixelData", "DoubleFloatPixelData"}
# Maximum value lengths by VR (PS3.5 6.2), for warning 0xB202.
VR_MAX_LENGTH = {"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "IS": 12, "LO": 64, "SH": 16, "TM": 14, "UI": 64,
                 "LT": 10240, "ST": 1024, "DT": 26}


class Normalized:
    """The four levels of one instance plus what normalization noticed."""

    def __init__(self) -> None:
        self.levels: dict[str, dict[str, Any]] = {"Patient": {}, "Study": {}, "Series": {}, "Instance": {}}
        self.vrs: dict[str, dict[str, str]] = {"Patient": {}, "Study": {}, "Series": {}, "Instance": {}}
        self.too_long: list[str] = []
        self.unreadable: list[str] = []


def _key(element: DataElement) -> tuple[str, bool]:
    """(key, needs a DICOMVRs entry)."""
    if element.tag.is_private:
        return f"{element.tag:08X}", True
    keyword = keyword_for_tag(element.tag)
    return (keyword, False) if keyword else (f"{element.tag:08X}", True)


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return str(value)


def _as_stored(value: Any) -> str:
    """IS and DS exactly as written in the file ("1.0", not 1.0)."""
    original = getattr(value, "original_string", None)
    return original if isinstance(original, str) else str(value)


def _scalar(vr: str, value: Any) -> Any:
    if vr in INTEGER_VRS:
        return int(value)
    if vr in FLOAT_VRS:
        return _number(float(value))
    if vr == "AT":
        return f"{int(value):08X}"
    if vr in ("IS", "DS"):
        return _as_stored(value)
    return _text(value)


def element_value(element: DataElement) -> Any:
    vr = element.VR
    if vr == "SQ":
        return [dataset_to_dict(item) for item in element.value] if element.value else None
    value = element.value
    if value is None:
        return None
    if vr in BINARY_VRS or isinstance(value, (bytes, bytearray)):
        if len(value) == 0:
            return None
        if len(value) > BULK_THRESHOLD:
            return None  # served as bulk data
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (list, MultiValue, tuple)):
        items = [_scalar(vr, item) for item in value]
        if not items:
            return None
        return items[0] if len(items) == 1 else items
    if isinstance(value, str) and value == "":
        return None
    return _scalar(vr, value)


def dataset_to_dict(dataset: Dataset, notes: Normalized | None = None) -> dict[str, Any]:
    """A sequence item (or any dataset) as one flat normalized object, with its own DICOMVRs map."""
    result: dict[str, Any] = {}
    vrs: dict[str, str] = {}
    for element in _elements(dataset, notes):
        key, private = _key(element)
        result[key] = _safe_value(element, key, notes)
        if private:
            vrs[key] = element.VR
    if vrs:
        result["DICOMVRs"] = vrs
    return result


def _elements(dataset: Dataset, notes: Normalized | None):
    for tag in list(dataset.keys()):
        try:
            element = dataset[tag]
        except Exception:
            if notes is not None:
                notes.unreadable.append(f"{int(tag):08X}")
            continue
        if element.tag.element == 0:  # group lengths are recomputed when a file is written
            continue
        yield element


def _safe_value(element: DataElement, key: str, notes: Normalized | None) -> Any:
    try:
        value = element_value(element)
    except Exception:
        # An element pydicom cannot interpret (say, a broken UN sequence): keep its bytes.
        if notes is not None:
            notes.unreadable.append(key)
        raw = getattr(element, "value", b"")
        return base64.b64encode(raw).decode("ascii") if isinstance(raw, (bytes, bytearray)) and raw else None
    if notes is not None and element.VR in VR_MAX_LENGTH and isinstance(value, str):
        if len(value) > VR_MAX_LENGTH[element.VR]:
            notes.too_long.append(key)
    return value


def normalize_dataset(dataset: Dataset) -> Normalized:
    notes = Normalized()
    for element in list(_elements(dataset.file_meta, notes)) + list(_elements(dataset, notes)):
        key, private = _key(element)
        if key in PIXEL_KEYWORDS:
            level, value = "Instance", None
        else:
            level = "Instance" if element.tag.group == 2 else level_of(key)
            value = _safe_value(element, key, notes)
        notes.levels[level][key] = value
        if private:
            notes.vrs[level][key] = element.VR
    return notes
