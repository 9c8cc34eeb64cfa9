"""Rebuilding a DICOM P10 file from a normalized metadata document (SPEC 11.4); no Django.

The Patient, Study, Series and Instance maps are merged, VRs come from the dictionary (ambiguous ones resolved
from PixelRepresentation) or from DICOMVRs for private tags, binary values are base64-decoded, and a new file
meta group names the output transfer syntax. Pixel data is native for Explicit VR Little Endian and encapsulated
(Basic Offset Table plus one fragment per frame) otherwise.

`p10_parts` writes the same bytes as `write_p10` piece by piece: the attributes before Pixel Data, the Pixel Data
element's header (its length, or the Basic Offset Table, computed up front from the frame sizes), each frame as it
is handed over, then the attributes after Pixel Data; so a server can send a file of any size while holding one
frame of it.
"""
from __future__ import annotations

import base64
import io
import re
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import pydicom.config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE

BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
NUMBER_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"}


def _vr(tag: Tag, key: str, vrs: dict[str, str], signed: bool, value: Any = None) -> str:
    if key in vrs:
        return vrs[key]
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    if isinstance(value, str) and "OW" in vr:
        return "OW"  # binary values are base64 text in the document
    if vr in ("US or SS", "US or SS or OW"):
        return "SS" if signed else "US"
    if vr == "US or OW":
        return "US"
    if vr == "OB or OW":
        return "OW"
    return vr


def value_vr(tag: int, key: str, vrs: dict[str, str], signed: bool, value: Any = None) -> str:
    """The VR a normalized value is written with: from DICOMVRs, else the dictionary's, ambiguous ones resolved."""
    return _vr(tag, key, vrs, signed, value)


def _value(vr: str, value: Any, signed: bool) -> Any:
    if value is None:
        return None
    if vr == "SQ":
        return Sequence([dict_to_dataset(item, signed=signed) for item in value])
    if vr in BINARY_VRS:
        return base64.b64decode(value) if isinstance(value, str) else None
    if vr == "AT":
        return [int(v, 16) for v in value] if isinstance(value, list) else int(value, 16)
    return value


_INTEGER_STRING = re.compile(r" *[+-]?[0-9]+ *")
_DECIMAL_STRING = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_SHORT_LENGTH_VRS = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL", "SS",
                     "ST", "TM", "UI", "UL", "US"}


def _as_written(vr: str, value: Any) -> bytes | None:
    """The bytes of a value pydicom cannot write in its VR, to be written as they were stored; None otherwise.

    Import keeps values as the file had them (SPEC 4.6): an IS "12a", a DS "1.00=00", text where the dictionary
    says US, text too long for a 2-byte length field. pydicom raises on writing those, which would fail
    GetDICOMInstance of the whole instance, so they are written as OB with their text as the bytes (not UN:
    pydicom converts a UN element of a known tag to the dictionary VR, which is what fails)."""
    items = value if isinstance(value, list) else [value]
    if vr in _SHORT_LENGTH_VRS and sum(len(item) for item in items if isinstance(item, str)) > 0x3FFF:
        data = _text_bytes(items)
        if len(data) > 0xFFFE:
            return data
    if vr in ("IS", "DS"):
        pattern = _INTEGER_STRING if vr == "IS" else _DECIMAL_STRING
        fits = all(isinstance(item, str) and pattern.fullmatch(item) and item.isascii() for item in items)
    elif vr in NUMBER_VRS:
        fits = all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in items)
    elif vr == "AT":
        fits = all(isinstance(item, str) and _HEX_TAG.fullmatch(item) for item in items)
    else:
        return None
    return None if fits else _text_bytes(items)


def _text_bytes(items: list[Any]) -> bytes:
    if len(items) == 1 and isinstance(items[0], (bytes, bytearray)):
        data = bytes(items[0])  # raw bytes as the file had them, not their repr
        return data + (b"\0" if len(data) % 2 else b"")
    text = "\\".join("" if item is None else str(item) for item in items)
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    return data + (b" " if len(data) % 2 else b"")


def dict_to_dataset(values: dict[str, Any], *, signed: bool = False) -> Dataset:
    dataset = Dataset()
    vrs = values.get("DICOMVRs", {})
    for key, value in values.items():
        if key == "DICOMVRs":
            continue
        number = int(key, 16) if len(key) == 8 and all(c in "0123456789ABCDEF" for c in key) else tag_for_keyword(key)
        # File Meta is written anew; Command Set elements (group 0000) are no part of a stored instance.
        if number is None or Tag(number).group in (0x0000, 0x0002):
            continue
        tag = Tag(number)
        vr = _vr(tag, key, vrs, signed, value)
        written = _as_written(vr, value) if value is not None else None
        if written is None:
            try:
                element = DataElement(tag, vr, _value(vr, value, signed))
            except Exception:  # a value pydicom rejects for its VR (bytes that are not text, say)
                written = _text_bytes(value if isinstance(value, list) else [value])
        dataset.add(DataElement(tag, "OB", written) if written is not None else element)
    return dataset


def instance_dataset(document: dict[str, Any], series_uid: str, sop_uid: str) -> tuple[Dataset, dict[str, Any]]:
    """The instance's dataset without pixel data, and its instance node (for frames and the original syntax)."""
    series = document["Study"]["Series"][series_uid]
    instance = series["Instances"][sop_uid]
    merged: dict[str, Any] = {}
    vrs: dict[str, str] = {}
    for node in (document["Patient"], document["Study"], series, instance):
        merged.update(node.get("DICOM", {}))
        vrs.update(node.get("DICOMVRs", {}))
    merged["DICOMVRs"] = vrs
    signed = merged.get("PixelRepresentation") == 1
    merged.pop("PixelData", None)
    return dict_to_dataset(merged, signed=signed), instance


def _file_meta(dataset: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1499.1"
    meta.ImplementationVersionName = "APERTURE_1"
    return meta


def write_p10(dataset: Dataset, *, transfer_syntax: str, pixel_frames: list[bytes] | None, native: bool) -> bytes:
    """The whole file at once (instances without pixel data, and the reference `p10_parts` is tested against)."""
    dataset.file_meta = _file_meta(dataset, transfer_syntax)
    if pixel_frames is not None:
        if native:
            data = b"".join(pixel_frames)
            vr = "OB" if int(dataset.get("BitsAllocated", 8)) <= 8 else "OW"
            dataset.add(DataElement(0x7FE00010, vr, data + (b"\0" if len(data) % 2 else b"")))
        else:
            dataset.add(DataElement(0x7FE00010, "OB", encapsulate(pixel_frames, has_bot=True)))
            dataset["PixelData"].is_undefined_length = True
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


PIXEL_DATA_TAG = 0x7FE00010
_ITEM = b"\xFE\xFF\x00\xE0"
_SEQUENCE_DELIMITER = b"\xFE\xFF\xDD\xE0\x00\x00\x00\x00"


class FrameSizeError(ValueError):
    """A frame handed to `p10_parts` is not the size announced for it (the file is already partly sent)."""


@dataclass
class StreamedP10:
    """A P10 file as pieces: `length` bytes in all, produced by iterating `parts` (once)."""

    length: int
    parts: Iterator[bytes]


def p10_parts(dataset: Dataset, *, transfer_syntax: str, frame_sizes: list[int], frames: Iterable[bytes],
              native: bool) -> StreamedP10:
    """The file `write_p10(dataset, pixel_frames=list(frames), ...)` writes, byte for byte, with each frame
    taken from `frames` only when its turn comes; `frame_sizes` are their lengths, known before."""
    before, after = Dataset(), Dataset(parent_encoding=dataset._character_set)
    for element in dataset:
        (before if element.tag < PIXEL_DATA_TAG else after).add(element)
    before.file_meta = dataset.file_meta = _file_meta(dataset, transfer_syntax)
    buffer = io.BytesIO()
    before.save_as(buffer, enforce_file_format=True, implicit_vr=False, little_endian=True)
    head = buffer.getvalue()
    tail = DicomBytesIO()
    tail.is_implicit_VR, tail.is_little_endian = False, True
    write_dataset(tail, after)
    if native:
        data_length = sum(frame_sizes)
        padded = data_length + data_length % 2
        vr = b"OB" if int(dataset.get("BitsAllocated", 8)) <= 8 else b"OW"
        pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, vr, 0, padded)
        pixel_length = len(pixel_header) + padded
    else:
        offsets, position = [], 0
        for size in frame_sizes:
            offsets.append(position)
            position += 8 + size + size % 2
        pixel_header = (struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + _ITEM
                        + struct.pack(f"<I{len(offsets)}I", 4 * len(offsets), *offsets))
        pixel_length = len(pixel_header) + position + len(_SEQUENCE_DELIMITER)
    length = len(head) + pixel_length + len(tail.getvalue())
    return StreamedP10(length, _parts(head, pixel_header, frame_sizes, frames, native, tail.getvalue()))


def _parts(head: bytes, pixel_header: bytes, frame_sizes: list[int], frames: Iterable[bytes], native: bool,
           tail: bytes) -> Iterator[bytes]:
    yield head + pixel_header
    count = 0
    for size, frame in zip(frame_sizes, frames, strict=True):
        if len(frame) != size:
            raise FrameSizeError(f"frame {count} has {len(frame)} bytes, {size} were announced")
        if native:
            yield frame
        else:
            yield _ITEM + struct.pack("<I", size + size % 2)
            yield frame + b"\0" if size % 2 else frame
        count += 1
    if native:
        if sum(frame_sizes) % 2:
            yield b"\0"
    else:
        yield _SEQUENCE_DELIMITER
    if tail:
        yield tail
