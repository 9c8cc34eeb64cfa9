"""Who a DICOM P10 file says it is (SOP class and instance, study and series), read from its header only.

STOW-RS (SPEC 11.5) names every instance in its response and refuses instances of another study before they reach
the import pipeline, so it needs these four UIDs without reading the file: pydicom reads the header with large
values deferred (it seeks past them) and stops before the pixel data. No Django.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pydicom

logger = logging.getLogger(__name__)

_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class InstanceIdentity:
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str


def p10_identity(path: Path) -> InstanceIdentity | None:
    """The UIDs of the P10 file at `path`; None when it is not a readable P10 file or lacks one of them."""
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, defer_size=1024, specific_tags=list(_KEYWORDS))
        values = [str(dataset.get(keyword, "") or "").strip() for keyword in _KEYWORDS]
    except Exception as e:  # noqa: BLE001 - pydicom fails on hostile bytes in many ways (struct.error,
        # BytesLengthException, NotImplementedError for an unknown VR, ...): every one means "not a usable part"
        logger.debug("no identity in a stored part (%s)", type(e).__name__)
        return None
    if not all(values):
        return None
    return InstanceIdentity(*values)
