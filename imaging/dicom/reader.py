"""Reading and checking DICOM Part 10 files before anything is stored (SPEC 4.3 steps 1-3, 4.6).

Every problem with a file becomes a `DicomInputError` whose message names the broken rule, so that the import
manifest can tell the sender exactly what to fix.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import pydicom
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
    """Parse and check a P10 file; raises DicomInputError naming the first broken rule."""
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
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is not None and 144 + int(group_length) > len(data):
        raise DicomInputError("Not a valid DICOM P10 file: the File Meta Information group is truncated")
    if not meta.get("TransferSyntaxUID"):
        raise DicomInputError("DICOM attribute TransferSyntaxUID does not exist")
    for keyword in REQUIRED:
        try:
            value = dataset.get(keyword)
        except Exception as e:
            raise DicomInputError(f"DICOM attribute {keyword} cannot be read: {_short(e)}") from e
        if value is None or str(value).strip() == "":
            raise DicomInputError(f"DICOM attribute {keyword} does not exist")
    check_length_limits(dataset)
    return dataset


def check_length_limits(dataset: Dataset) -> None:
    for keyword, limit in LENGTH_LIMITS.items():
        element = dataset.get(keyword)
        if element is None:
            continue
        text = str(element)
        if len(text) > limit:
            raise DicomInputError(
                f"DICOM attribute {keyword} has length {len(text)}, more than the allowed {limit}"
            )
    for keyword, limit in COUNT_LIMITS.items():
        value = dataset.get(keyword)
        if value is not None and value != "" and not 0 <= int(value) <= limit:
            raise DicomInputError(f"DICOM attribute {keyword} must be between 0 and {limit}")


def _short(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]
