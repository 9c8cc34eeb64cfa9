"""A pydicom dataset to the store's normalized metadata (SPEC 5.2).

Keys are PS3.6 keywords, or 8 uppercase hex digits for private and unknown elements (their VR goes into a
sibling `DICOMVRs` map). PN is one string, IS/DS stay the strings as stored, binary numbers become JSON numbers,
one value is a scalar and several a list, empty elements are null, sequences recurse. Elements are placed at the
Patient, Study, Series or Instance level by imaging.dicom.levels.
"""
from __future__ import annotations

import base64
import math
import re
import struct
from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
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


@lru_cache(maxsize=8192)
def keyword_of(tag: int) -> str:
    """The element's PS3.6 keyword, or "" where a keyword does not name this one tag: unknown elements, and the
    repeating groups (overlays 60xx, curves 50xx), whose keyword is shared by every group of the range, so that
    two overlays would land on one key and a rebuilt file could not tell which group a value came from."""
    keyword = keyword_for_tag(tag)
    return keyword if keyword and tag_for_keyword(keyword) == tag else ""


@lru_cache(maxsize=8192)
def dictionary_fits(tag: int, vr: str) -> bool:
    """Whether `vr` is the VR (or one of the VRs) the dictionary gives a public element. A file may carry another
    one (a corrupt or non-conformant header); that VR is then recorded in DICOMVRs, as for private elements, so
    that a rebuilt file writes the value with the VR it was read with."""
    try:
        return vr in dictionary_VR(tag).split(" or ")
    except KeyError:
        return False


def _key(element: DataElement) -> tuple[str, bool]:
    """(key, needs a DICOMVRs entry)."""
    if element.tag.is_private:
        return f"{element.tag:08X}", True
    keyword = keyword_of(element.tag)
    if not keyword:
        return f"{element.tag:08X}", True
    return keyword, not dictionary_fits(element.tag, element.VR)


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
    if vr == "PN" and str(value) == "":
        return None  # a PN of only padding: pydicom gives an empty PersonName, which is not a str
    return _scalar(vr, value)


def dataset_to_dict(dataset: Dataset, notes: Normalized | None = None, charset: str | None = None) -> dict[str, Any]:
    """A sequence item (or any dataset) as one flat normalized object, with its own DICOMVRs map."""
    result: dict[str, Any] = {}
    vrs: dict[str, str] = {}
    charset = charset if "SpecificCharacterSet" not in dataset else None
    for key, vr, private, value in _normalized_elements(dataset, notes, charset):
        result[key] = value
        if private:
            vrs[key] = vr
    if vrs:
        result["DICOMVRs"] = vrs
    return result


def _normalized_elements(dataset: Dataset, notes: Normalized | None, charset: str | None):
    """(key, VR, private, value) of each element. Elements still raw (as pydicom read them) are converted here
    directly when their VR is a plain one; pydicom converts the rest (sequences, ambiguous or unknown VRs,
    other character sets, anything unusual). The results are the same either way (a test compares them over
    the shared DICOM files); the direct path is several times cheaper per element."""
    for tag in list(dataset.keys()):
        if (tag & 0xFFFF) == 0:  # group lengths are recomputed when a file is written
            continue
        converted = element = None
        try:  # pydicom converts an element when it is first touched: a corrupt one raises here
            raw = dataset.get_item(tag) if FAST_PATH else None
            if isinstance(raw, RawDataElement) and raw.length != 0xFFFFFFFF:
                converted = _raw(raw, charset)
            if converted is None:
                element = dataset[tag]
        except Exception:
            if notes is not None:
                notes.unreadable.append(f"{int(tag):08X}")
            continue
        if converted is not None:
            key, vr, private, value = converted
            _note_length(notes, vr, key, value)
            yield key, vr, private, value
            continue
        if element.tag.element == 0:
            continue
        key, private = _key(element)
        value = None if key in PIXEL_KEYWORDS else _safe_value(element, key, notes, charset)
        yield key, element.VR, private, value


def _safe_value(element: DataElement, key: str, notes: Normalized | None, charset: str | None = None) -> Any:
    try:
        if element.VR == "SQ":
            # Sequence items are not checked for lengths or unreadable values: warnings name top-level elements.
            value = [dataset_to_dict(item, None, charset) for item in element.value] if element.value else None
        else:
            value = element_value(element)
    except Exception:
        # An element pydicom cannot interpret (say, a broken UN sequence): keep its bytes.
        if notes is not None:
            notes.unreadable.append(key)
        raw = getattr(element, "value", b"")
        return base64.b64encode(raw).decode("ascii") if isinstance(raw, (bytes, bytearray)) and raw else None
    _note_length(notes, element.VR, key, value)
    return value


def _note_length(notes: Normalized | None, vr: str, key: str, value: Any) -> None:
    if notes is not None and vr in VR_MAX_LENGTH and isinstance(value, str) and len(value) > VR_MAX_LENGTH[vr]:
        notes.too_long.append(key)


# --- Direct conversion of raw elements (mirrors pydicom.values for the default configuration) ---

FAST_PATH = True
_SIMPLE_CHARSETS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
_TEXT_MULTI = {"LO", "SH", "UC"}  # charset-dependent, backslash-separated, trailing spaces removed per value
_TEXT_SINGLE = {"LT", "ST", "UT"}  # charset-dependent, one value
_ASCII_MULTI = {"AS", "CS", "DA", "DT", "TM"}
_PLAIN_BINARY = {"OB", "OW", "OD", "OF", "OL", "OV"}
_INTEGER_STRING = re.compile(r" *[+-]?[0-9]+ *")
_DECIMAL_STRING = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")


def dataset_charset(dataset: Dataset) -> str | None:
    """The Python codec for the dataset's text, or None when only pydicom can decode it (ISO 2022, GB18030...)."""
    raw = dataset.get_item(0x00080005) if "SpecificCharacterSet" in dataset else None
    if raw is None:
        return "latin_1"
    value = raw.value if isinstance(raw, RawDataElement) else dataset.SpecificCharacterSet
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin_1")
    if not isinstance(value, str):
        return None
    return _SIMPLE_CHARSETS.get(value.strip(" \x00"))


def _raw(raw: RawDataElement, charset: str | None):
    """(key, VR, private, value) for a raw element, or None to let pydicom convert it."""
    tag = raw.tag
    private = bool((tag >> 16) & 1)
    vr = raw.VR
    if private:
        if vr is None or vr == "UN":
            return None
        key = f"{tag:08X}"
    else:
        keyword = keyword_of(tag)
        if not keyword or keyword in PIXEL_KEYWORDS:
            return None
        if vr is None:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                return None
        elif vr == "UN":
            return None  # pydicom re-reads known elements sent as UN with their dictionary VR
        elif not dictionary_fits(tag, vr):
            return None  # recorded with its VR by the general path
        key = keyword
    data = raw.value
    if data is None or not raw.is_little_endian or not isinstance(data, (bytes, bytearray)):
        return None
    if not data:
        return key, vr, private, None
    value = _convert(vr, bytes(data), charset)
    if value is _PYDICOM:
        return None
    return key, vr, private, value


_PYDICOM = object()


def _convert(vr: str, data: bytes, charset: str | None) -> Any:
    if vr in _NUMBER_FORMATS:
        size = struct.calcsize("<" + _NUMBER_FORMATS[vr])
        if len(data) % size:
            return _PYDICOM
        values = struct.unpack(f"<{len(data) // size}{_NUMBER_FORMATS[vr]}", data)
        if vr in FLOAT_VRS:
            values = tuple(_number(float(v)) for v in values)
        return values[0] if len(values) == 1 else list(values)
    if vr in _PLAIN_BINARY:
        return None if len(data) > BULK_THRESHOLD else base64.b64encode(data).decode("ascii")
    if vr in _TEXT_MULTI or vr in _TEXT_SINGLE or vr == "PN":
        if charset is None:
            return _PYDICOM
        try:
            text = (data.rstrip(b"\x00 ") if vr == "PN" else data).decode(charset)
        except UnicodeDecodeError:
            return _PYDICOM
        if "\x1b" in text or (vr == "PN" and "=" in text):
            return _PYDICOM  # ISO 2022 escapes; PN component groups are left to pydicom's PersonName
        if vr in _TEXT_SINGLE:
            return _scalar_or_list([text.rstrip("\x00 ")], single=True)
        parts = text.split("\\")
        return _scalar_or_list(parts if vr == "PN" else [part.rstrip("\x00 ") for part in parts])
    text = data.decode("latin_1")
    if vr in _ASCII_MULTI:
        return _scalar_or_list(text.rstrip(" \x00").split("\\"))
    if vr == "UI":
        return _scalar_or_list(text.rstrip("\x00 ").rstrip(" \x00").split("\\"))
    if vr == "AE":
        return _scalar_or_list([part.strip() for part in text.split("\\")])
    if vr == "UR":
        return _scalar_or_list([text.rstrip()], single=True)
    if vr in ("IS", "DS"):
        text = text.strip() if vr == "DS" else text
        parts = text.rstrip(" \x00").split("\\")
        pattern = _INTEGER_STRING if vr == "IS" else _DECIMAL_STRING
        if not all(pattern.fullmatch(part) for part in parts):
            return _PYDICOM
        return _scalar_or_list([part.strip() for part in parts])
    return _PYDICOM


def _scalar_or_list(values: list[str], single: bool = False) -> Any:
    """As element_value shapes pydicom's values: one value a scalar (None when empty), several a list."""
    if single or len(values) == 1:
        return values[0] or None
    return values


def normalize_dataset(dataset: Dataset) -> Normalized:
    notes = Normalized()
    charset = dataset_charset(dataset)
    file_meta = _normalized_elements(dataset.file_meta, notes, charset)  # group 0002: Instance level
    for key, vr, private, value in [*file_meta, *_normalized_elements(dataset, notes, charset)]:
        level = "Instance" if key in PIXEL_KEYWORDS else level_of(key)
        notes.levels[level][key] = value
        if private:
            notes.vrs[level][key] = vr
    return notes
