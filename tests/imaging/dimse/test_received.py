"""The header check of a received instance (imaging/dicom/received.py): the status each kind of file earns."""
from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from imaging.dicom.received import received_check
from tests.paths import DICOM_DIR

SOURCE = DICOM_DIR / "ELE__CT_small.dcm"
SOP = pydicom.dcmread(SOURCE, stop_before_pixels=True).SOPInstanceUID


def written(tmp_path: Path, **changes) -> Path:
    dataset = pydicom.dcmread(SOURCE)
    for keyword, value in changes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    path = tmp_path / "received.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def check(path: Path, sop_class: str = CTImageStorage, sop: str = SOP):
    return received_check(path, sop_class_uid=sop_class, sop_instance_uid=sop, transfer_syntax=ExplicitVRLittleEndian)


@pytest.mark.parametrize("changes, status, reason", [
    ({}, 0x0000, ""),
    ({"StudyInstanceUID": None}, 0xC001, "StudyInstanceUID is missing"),
    ({"SeriesInstanceUID": None}, 0xC001, "SeriesInstanceUID is missing"),
    ({"SOPInstanceUID": "1.2.3.4"}, 0xC001, "SOPInstanceUID is not the command's"),
    ({"Rows": 0}, 0xC002, "Rows x Columns of 0x128"),
    ({"BitsAllocated": 12}, 0xC002, "BitsAllocated 12"),
    ({"SamplesPerPixel": 2}, 0xC002, "SamplesPerPixel 2"),
], ids=["fine", "no-study", "no-series", "other-instance", "no-rows", "bits", "samples"])
def test_status_by_header(tmp_path, changes, status, reason):
    verdict = check(written(tmp_path, **changes))
    assert (verdict.status, verdict.reason[:len(reason)]) == (status, reason)
    assert verdict.keep == (status < 0xC000)


def test_a_sop_class_other_than_the_command_is_kept_with_a_warning(tmp_path):
    verdict = check(written(tmp_path), sop_class=MRImageStorage)
    assert (verdict.status, verdict.keep) == (0xB007, True)


def test_bytes_that_are_not_dicom_cannot_be_understood(tmp_path):
    path = tmp_path / "noise.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300)
    verdict = check(path)
    assert 0xC000 <= verdict.status <= 0xCFFF and not verdict.keep


def test_a_file_cut_short_cannot_be_understood(tmp_path):
    path = tmp_path / "cut.dcm"
    path.write_bytes(SOURCE.read_bytes()[:400])
    verdict = check(path)
    assert 0xC000 <= verdict.status <= 0xCFFF and not verdict.keep


def test_instances_without_pixels_pass(tmp_path):
    dataset = pydicom.dcmread(DICOM_DIR / "ILE__rtplan.dcm")
    assert received_check(DICOM_DIR / "ILE__rtplan.dcm", sop_class_uid=dataset.SOPClassUID,
                          sop_instance_uid=dataset.SOPInstanceUID,
                          transfer_syntax=dataset.file_meta.TransferSyntaxUID).status == 0x0000


def test_a_large_private_element_is_skipped_not_loaded(tmp_path):
    """The check must not load a huge non-pixel element (a modality's private OB, say) into memory."""
    import tracemalloc

    dataset = pydicom.dcmread(SOURCE)
    block = dataset.private_block(0x0009, "APERTURE TEST", create=True)
    block.add_new(0x10, "OB", b"\0" * (48 * 1024 * 1024))  # (0009,1010): before the study, series and image tags
    path = tmp_path / "large.dcm"
    dataset.save_as(path, enforce_file_format=True)
    del dataset, block
    tracemalloc.start()
    try:
        verdict = check(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert verdict.status == 0x0000
    assert peak < 4 * 1024 * 1024
