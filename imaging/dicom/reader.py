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
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

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
        raise DicomInputError(f"Not a valid DICOM P10 file: {short_reason(e)}") from e
    except Exception as e:  # pydicom raises many kinds on truncated or corrupt input
        raise DicomInputError(f"Not a valid DICOM P10 file: {short_reason(e)}") from e
    meta = getattr(dataset, "file_meta", None)
    if meta is None or len(meta) == 0:
        raise DicomInputError("Not a valid DICOM P10 file: the File Meta Information group is missing")
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is not None and 144 + int(group_length) > len(data):
        raise DicomInputError("Not a valid DICOM P10 file: the File Meta Information group is truncated")
    if not meta.get("TransferSyntaxUID"):
        raise DicomInputError("DICOM attribute TransferSyntaxUID does not exist")
    return dataset


def text_of(value: Any) -> str:
    """A normalized value as the text the file carries: several values joined with backslashes."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(text_of(item) for item in value)
    return str(value)


def check_instance(values: dict[str, Any], unreadable: list[str]) -> None:
    """The required attributes (SPEC 4.3) on the normalized attributes of all levels merged; `unreadable` holds the
    tags normalization could not convert."""
    for keyword in REQUIRED:
        if keyword in unreadable or f"{tag_for_keyword(keyword):08X}" in unreadable:
            raise DicomInputError(f"DICOM attribute {keyword} cannot be read")
        if text_of(values.get(keyword)).strip() == "":
            raise DicomInputError(f"DICOM attribute {keyword} does not exist")


def search_key_violation(values: dict[str, Any]) -> str | None:
    """The first search key over its SPEC 4.6 limit, as the file's failure reason; None when all are within.

    One rule for every key of the table: over the limit, the file fails (the search index holds exactly these
    lengths, and a cut value would be found by the wrong searches). Any other value longer than its VR allows is
    kept with warning 0xB202 (normalize.py). The import checks the values as they will be stored, after a JSON
    metadata mapping (SPEC 4.10) has had its say, so such a mapping can correct a value that is too long.
    """
    for keyword, limit in LENGTH_LIMITS.items():
        text = text_of(values.get(keyword))
        if len(text) > limit:
            return (f"DICOM attribute {keyword} has length {len(text)}, more than the allowed {limit} for this "
                    "search key; correct it in the file, or with a JSON metadata mapping for its study")
    for keyword, limit in COUNT_LIMITS.items():
        text = text_of(values.get(keyword)).strip()
        if text == "":
            continue
        try:
            value = int(text)
        except ValueError:
            return f"DICOM attribute {keyword} must be an integer"
        if not 0 <= value <= limit:
            return f"DICOM attribute {keyword} must be between 0 and {limit}"
    return None


REASON_LIMIT = 500


def short_reason(error: Exception) -> str:
    """A library's error message as one line for a manifest: whitespace collapsed, and when it is long, cut at the
    last word that fits with an ellipsis, never inside a word (a reason cut mid-word reads as a different one)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) <= REASON_LIMIT:
        return text
    cut = text[:REASON_LIMIT].rsplit(" ", 1)[0]
    return cut + " …"
