"""Normalized metadata (SPEC 5.2) to DICOM JSON (PS3.18 Annex F, SPEC 11.6) directly, without a pydicom Dataset;
no Django.

WADO-RS metadata answers a whole series at once, so this is a hot path: building a pydicom Dataset per instance
(`imaging.dicom.rebuild.dict_to_dataset`) and asking it for `to_json_dict` costs milliseconds per instance. Here
each normalized value is turned into its JSON attribute directly when its shape is a plain one (strings, numbers,
PN, UIDs, sequences, base64 binary). Anything unusual (a numeric string that does not parse, text where the
dictionary says US, a text too long for its length field) is handed to pydicom through the rebuild path, one
element at a time, so the result is the same as `dict_to_dataset(values).to_json_dict()` either way; a test
compares the two over the shared DICOM files.

Binary values larger than `bulk_threshold` bytes become a `BulkDataURI` made by the caller's `bulk_uri(tag_path)`;
a tag path names an element by its tags from the top, items by their 0-based index: `00091010`,
`00540016/0/00181072` (see `bulk_paths`).
"""
from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from typing import Any, Callable, Iterator

from pydicom.datadict import tag_for_keyword

from imaging.dicom.rebuild import dict_to_dataset, value_vr

BULK_THRESHOLD = 1024 * 1024
PIXEL_KEYS = {"PixelData", "FloatPixelData", "DoubleFloatPixelData", "7FE00010", "7FE00008", "7FE00009"}
BulkUri = Callable[[str], str]

_BINARY = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
_INTEGERS = {"US", "SS", "UL", "SL", "UV", "SV"}
_FLOATS = {"FL", "FD"}
_SINGLE_TEXT = {"LT", "ST", "UT"}  # a backslash is part of the value, not a separator
_TEXT = {"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI", "UR"} | _SINGLE_TEXT
_SHORT_LENGTH = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UI"}
_INTEGER_STRING = re.compile(r" *[+-]?[0-9]+ *")
_DECIMAL_STRING = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")


@lru_cache(maxsize=16384)
def tag_of(key: str) -> int | None:
    """The tag a normalized key names (a keyword or 8 hex digits); None for what names no element."""
    if len(key) == 8 and _HEX_TAG.fullmatch(key):
        return int(key, 16)
    return tag_for_keyword(key)


@lru_cache(maxsize=16384)
def _dictionary_vr(tag: int, key: str, signed: bool, is_text: bool) -> str:
    """The rebuild path's VR for an element without a DICOMVRs entry (only whether the value is text matters)."""
    return value_vr(tag, key, {}, signed, "" if is_text else None)


def merged_instance(levels: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """(values, private VRs) of one instance from its Patient, Study, Series and Instance nodes, in that order."""
    values: dict[str, Any] = {}
    vrs: dict[str, str] = {}
    for node in levels:
        values.update(node.get("DICOM", {}))
        vrs.update(node.get("DICOMVRs", {}))
    return values, vrs


def to_dicom_json(values: dict[str, Any], vrs: dict[str, str], *, bulk_uri: BulkUri | None = None,
                  bulk_threshold: int = BULK_THRESHOLD, skip_pixels: bool = True,
                  signed: bool | None = None) -> dict[str, Any]:
    """One DICOM JSON object, attributes in tag order. Pixel data is left out (`skip_pixels`), as are File Meta and
    Command elements, which a stored instance has no part of (the rebuild path leaves them out too). `signed`
    (PixelRepresentation 1, which resolves the US-or-SS elements) is read from `values` unless given: a caller
    converting part of an instance's attributes gives the instance's."""
    if signed is None:
        signed = values.get("PixelRepresentation") == 1
    return _object(values, vrs, signed, "", bulk_uri, bulk_threshold, skip_pixels)


def _object(values: dict[str, Any], vrs: dict[str, str], signed: bool, path: str, bulk_uri: BulkUri | None,
            bulk_threshold: int, skip_pixels: bool) -> dict[str, Any]:
    attributes: list[tuple[int, dict[str, Any]]] = []
    for key, value in values.items():
        if key == "DICOMVRs" or (skip_pixels and key in PIXEL_KEYS):
            continue
        tag = tag_of(key)
        if tag is None or (tag >> 16) in (0x0000, 0x0002):
            continue
        tag_text = f"{tag:08X}"
        vr = vrs.get(key) or _dictionary_vr(tag, key, signed, isinstance(value, str))
        attribute = _attribute(vr, value, signed, f"{path}{tag_text}", bulk_uri, bulk_threshold)
        if attribute is None:
            attribute = _by_pydicom(key, value, vrs, signed, tag, f"{path}{tag_text}", bulk_uri, bulk_threshold)
            if attribute is None:
                continue
        attributes.append((tag, attribute))
    attributes.sort(key=lambda pair: pair[0])
    return {f"{tag:08X}": attribute for tag, attribute in attributes}


def _attribute(vr: str, value: Any, signed: bool, path: str, bulk_uri: BulkUri | None,
               bulk_threshold: int) -> dict[str, Any] | None:
    """The attribute for a plainly shaped value; None to let pydicom decide."""
    if vr == "SQ":
        if value is None:
            return {"vr": "SQ", "Value": []}
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return None
        return {"vr": "SQ", "Value": [
            _object(item, item.get("DICOMVRs", {}), signed, f"{path}/{index}/", bulk_uri, bulk_threshold, False)
            for index, item in enumerate(value)]}
    if value is None:
        return {"vr": vr}
    if vr in _BINARY:
        if not isinstance(value, str):
            return None
        try:
            size = len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            return None
        if size == 0:
            return {"vr": vr}
        if bulk_uri is not None and size > (bulk_threshold // 4) * 3:
            return {"vr": vr, "BulkDataURI": bulk_uri(path)}
        return {"vr": vr, "InlineBinary": value}
    items = value if isinstance(value, list) else [value]
    if not items:
        return {"vr": vr}
    if vr in _INTEGERS:
        if all(type(item) is int for item in items):
            return {"vr": vr, "Value": list(items)}
        return None
    if vr in _FLOATS:
        if all(type(item) in (int, float) for item in items):
            return {"vr": vr, "Value": [float(item) for item in items]}
        return None
    if not all(type(item) is str for item in items):
        return None
    if vr in _SHORT_LENGTH and sum(len(item) for item in items) > 0x3FFF:
        return None  # the rebuild path writes these as they were stored
    if vr not in _SINGLE_TEXT and len(items) == 1 and "\\" in items[0]:
        items = items[0].split("\\")  # pydicom splits a multi-valued text at its backslashes
    if len(items) == 1 and items[0] == "":
        return {"vr": vr}
    if vr in _TEXT:
        return {"vr": vr, "Value": list(items)}
    if vr == "PN":
        if "" in items:
            return None
        return {"vr": vr, "Value": [_person_name(item) for item in items]}
    if vr == "IS":
        if all(_INTEGER_STRING.fullmatch(item) and item.isascii() for item in items):
            return {"vr": vr, "Value": [int(item) for item in items]}
        return None
    if vr == "DS":
        if all(_DECIMAL_STRING.fullmatch(item) and item.isascii() for item in items):
            return {"vr": vr, "Value": [_decimal(item) for item in items]}
        return None
    if vr == "AT":
        if all(_HEX_TAG.fullmatch(item) for item in items):
            return {"vr": vr, "Value": [item.upper() for item in items]}
        return None
    return None


def _decimal(text: str) -> float:
    return float(text)


def _person_name(text: str) -> dict[str, str]:
    groups = text.split("=")
    name = {"Alphabetic": groups[0]}
    if len(groups) > 1:
        name["Ideographic"] = groups[1]
    if len(groups) > 2:
        name["Phonetic"] = groups[2]
    return name


def _by_pydicom(key: str, value: Any, vrs: dict[str, str], signed: bool, tag: int, path: str,
                bulk_uri: BulkUri | None, bulk_threshold: int) -> dict[str, Any] | None:
    """What pydicom makes of one element as the rebuild path writes it (see the module docstring)."""
    single = {key: value, "DICOMVRs": {key: vrs[key]} if key in vrs else {}}
    dataset = dict_to_dataset(single, signed=signed)
    if tag not in dataset:
        return None
    handler = (lambda element: bulk_uri(path)) if bulk_uri is not None else None
    element = dataset[tag]
    return element.to_json_dict(bulk_data_element_handler=handler, bulk_data_threshold=bulk_threshold)


def bulk_paths(values: dict[str, Any], vrs: dict[str, str], *, signed: bool | None = None,
               path: str = "") -> Iterator[tuple[str, str]]:
    """(tag path, base64 value) of every binary value of the instance, sequences included, pixel data left out."""
    if signed is None:
        signed = values.get("PixelRepresentation") == 1
    for key, value in values.items():
        if key == "DICOMVRs" or key in PIXEL_KEYS or value is None:
            continue
        tag = tag_of(key)
        if tag is None or (tag >> 16) in (0x0000, 0x0002):
            continue
        vr = value_vr(tag, key, vrs, signed, value)
        tag_path = f"{path}{tag:08X}"
        if vr == "SQ" and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield from bulk_paths(item, item.get("DICOMVRs", {}), signed=signed, path=f"{tag_path}/{index}/")
        elif vr in _BINARY and isinstance(value, str):
            yield tag_path, value
