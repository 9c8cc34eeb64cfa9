"""The fast header check of an instance received over DIMSE (C-STORE), before its status is answered. No Django.

It reads the header only (pydicom, stop before the pixel data, only the tags it checks, skipping by seeking any
other element and any value over 64 KiB, so that a huge private element costs no memory; the values inside an
undefined-length sequence are the one thing pydicom still reads whole) and answers a DIMSE status with a reason:
0x0000 fine; 0xB007 a warning (the data set's SOP class is not the one the command named: the instance is kept and
imported under its own class); 0xC000-range "cannot understand" (not DICOM, identifying UIDs missing or not the
command's, an image module no decoder could make sense of), when the file is dropped. Decoding and verifying the
pixels is the import job's work, afterwards.

A Deflated Explicit VR body is not inflated here: pydicom would inflate all of it at once, with no bound, and the
import reads it with a bounded inflater (imaging/dicom/reader.py), failing that file alone in its manifest.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian

from imaging.dicom.reader import short_reason

SUCCESS = 0x0000
WARNING_SOP_CLASS_MISMATCH = 0xB007
CANNOT_UNDERSTAND = 0xC000
CANNOT_UNDERSTAND_UIDS = 0xC001
CANNOT_UNDERSTAND_IMAGE = 0xC002

HEADER_TAGS = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns",
               "BitsAllocated", "BitsStored", "SamplesPerPixel", "NumberOfFrames"]
DEFER_SIZE = 64 * 1024
BITS_ALLOCATED = {1, 8, 16, 32, 64}
SAMPLES_PER_PIXEL = {1, 3, 4}


@dataclass(frozen=True)
class Verdict:
    status: int
    reason: str = ""

    @property
    def keep(self) -> bool:
        return self.status < CANNOT_UNDERSTAND


def received_check(path: Path, *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> Verdict:
    """The verdict on the P10 file at `path`, received under a C-STORE naming `sop_class_uid`/`sop_instance_uid`."""
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        return Verdict(SUCCESS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Only the tags looked at, and no value over DEFER_SIZE: a non-pixel element may be hundreds of MB
            # (a private OB, an encapsulated document), and the others are skipped by seeking, never loaded.
            dataset = dcmread(path, stop_before_pixels=True, defer_size=DEFER_SIZE, specific_tags=HEADER_TAGS)
            values = {keyword: str(dataset.get(keyword, "") or "").strip() for keyword in
                      ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")}
    except Exception as e:  # noqa: BLE001 - whatever pydicom makes of the bytes, the sender gets "cannot understand"
        return Verdict(CANNOT_UNDERSTAND, f"not a readable DICOM data set ({short_reason(e)})")
    for keyword, value in values.items():
        if not value:
            return Verdict(CANNOT_UNDERSTAND_UIDS, f"{keyword} is missing")
    if values["SOPInstanceUID"] != sop_instance_uid.strip():
        return Verdict(CANNOT_UNDERSTAND_UIDS, "SOPInstanceUID is not the command's AffectedSOPInstanceUID")
    image_problem = _image_problem(dataset)
    if image_problem:
        return Verdict(CANNOT_UNDERSTAND_IMAGE, image_problem)
    if values["SOPClassUID"] != sop_class_uid.strip():
        return Verdict(WARNING_SOP_CLASS_MISMATCH, "SOPClassUID is not the command's AffectedSOPClassUID")
    return Verdict(SUCCESS)


def _image_problem(dataset) -> str:
    """What is wrong with the image pixel module's sizes, if it has one; "" when nothing (or no image)."""
    if "Rows" not in dataset and "Columns" not in dataset:
        return ""
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        bits_allocated = int(dataset.BitsAllocated)
        bits_stored = int(dataset.get("BitsStored", bits_allocated) or bits_allocated)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except Exception as e:  # noqa: BLE001 - a missing or unreadable value is the problem to report
        return f"the image pixel module cannot be read ({short_reason(e)})"
    if not (0 < rows <= 65535 and 0 < columns <= 65535):
        return f"Rows x Columns of {rows}x{columns} is not an image size"
    if bits_allocated not in BITS_ALLOCATED or not 0 < bits_stored <= bits_allocated:
        return f"BitsAllocated {bits_allocated} with BitsStored {bits_stored} is not a pixel format"
    if samples not in SAMPLES_PER_PIXEL:
        return f"SamplesPerPixel {samples} is not 1, 3 or 4"
    if frames < 1:
        return f"NumberOfFrames {frames} is not a frame count"
    return ""
