"""Reading and checking DICOM Part 10 files before anything is stored (SPEC 4.3 steps 1-3, 4.6).

Every problem with a file becomes a `DicomInputError` whose message names the broken rule, so that the import
manifest can tell the sender exactly what to fix.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.values import converters

REQUIRED = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")

# Search keys with their import length limits (SPEC 4.6).
LENGTH_LIMITS = {
    "PatientID": 64,
    "PatientName": 256,
    "PatientBirthDate": 18,
    "PatientSex": 16,
    "StudyInstanceUID": 64,
    "StudyID": 16,
    "StudyDescription": 64,
    "AccessionNumber": 16,
    "StudyDate": 18,
    "StudyTime": 28,
}
COUNT_LIMITS = {"NumberOfStudyRelatedSeries": 1_000_000, "NumberOfStudyRelatedInstances": 1_000_000}


@dataclass
class DicomInputError(Exception):
    """A file that cannot be imported; `server_fault` marks failures that are ours, not the sender's."""

    message: str
    server_fault: bool = False

    def __str__(self) -> str:
        return self.message


def read_p10(data: bytes) -> Dataset:
    """Parse a P10 file and check its File Meta group; raises DicomInputError naming the first broken rule.

    The instance's own attributes are checked on its normalized form (`check_instance`), so that each element is
    converted once.
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        raise DicomInputError("Not a valid DICOM P10 file: the 128-byte preamble and DICM prefix are missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as e:
        raise DicomInputError(f"Not a valid DICOM P10 file: {_short(e)}") from e
    except Exception as e:  # pydicom raises many kinds on truncated or corrupt input
        raise DicomInputError(f"Not a valid DICOM P10 file: {_short(e)}") from e
    meta = getattr(dataset, "file_meta", None)
    if meta is None or len(meta) == 0:
        raise DicomInputError("Not a valid DICOM P10 file: the File Meta Information group is missing")
    _unknown_vrs_as_un(meta)
    _unknown_vrs_as_un(dataset)
    group_length = _meta_value(meta, "FileMetaInformationGroupLength")
    if group_length is not None:
        if isinstance(group_length, bool) or not isinstance(group_length, int):
            raise DicomInputError("Not a valid DICOM P10 file: FileMetaInformationGroupLength is not one UL value")
        if 144 + group_length > len(data):
            raise DicomInputError("Not a valid DICOM P10 file: the File Meta Information group is truncated")
    transfer_syntax = _meta_value(meta, "TransferSyntaxUID")
    if not transfer_syntax:
        raise DicomInputError("DICOM attribute TransferSyntaxUID does not exist")
    if not isinstance(transfer_syntax, str):
        raise DicomInputError("DICOM attribute TransferSyntaxUID is not one UID")
    return dataset


def _unknown_vrs_as_un(dataset: Dataset) -> None:
    """Elements whose VR field is no DICOM VR (a corrupt header) are kept as UN, their bytes as read.

    pydicom keeps such a VR as it found it and raises NotImplementedError whenever the element is touched, which
    would make any later access to the dataset (the pixel module, `in`, `get`) fail in a way that names nothing.
    As UN the element reads as bytes, so normalization keeps it raw and warns, and the pixel module checks name
    the attribute that is wrong."""
    for tag in list(dataset.keys()):
        raw = dataset.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.VR is not None and raw.VR not in converters:
            # Stays raw (Dataset.__setitem__ would convert it now, and conversion of a corrupt UN can raise too).
            dataset._dict[tag] = raw._replace(VR="UN")


def _meta_value(meta: Dataset, keyword: str) -> Any:
    """A File Meta element's value; DicomInputError when pydicom cannot convert it."""
    try:
        return meta.get(keyword)
    except Exception as e:
        raise DicomInputError(f"Not a valid DICOM P10 file: {keyword} cannot be read ({_short(e)})") from e


def text_of(value: Any) -> str:
    """A normalized value as the text the file carries: several values joined with backslashes."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(text_of(item) for item in value)
    return str(value)


def check_instance(values: dict[str, Any], unreadable: list[str]) -> None:
    """The required attributes (SPEC 4.3) and the length limits (SPEC 4.6), on the normalized attributes of all
    levels merged; `unreadable` holds the tags normalization could not convert."""
    for keyword in REQUIRED:
        if keyword in unreadable or f"{tag_for_keyword(keyword):08X}" in unreadable:
            raise DicomInputError(f"DICOM attribute {keyword} cannot be read")
        if text_of(values.get(keyword)).strip() == "":
            raise DicomInputError(f"DICOM attribute {keyword} does not exist")
    for keyword, limit in LENGTH_LIMITS.items():
        text = text_of(values.get(keyword))
        if len(text) > limit:
            raise DicomInputError(
                f"DICOM attribute {keyword} has length {len(text)}, more than the allowed {limit}"
            )
    for keyword, limit in COUNT_LIMITS.items():
        text = text_of(values.get(keyword)).strip()
        if text == "":
            continue
        try:
            value = int(text)
        except ValueError:
            raise DicomInputError(f"DICOM attribute {keyword} must be an integer") from None
        if not 0 <= value <= limit:
            raise DicomInputError(f"DICOM attribute {keyword} must be between 0 and {limit}")


def _short(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]
