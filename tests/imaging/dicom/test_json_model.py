"""The direct normalized-metadata to DICOM JSON converter (imaging.dicom.json_model) against pydicom: for every
shared DICOM file, the same object as `dict_to_dataset(...).to_json_dict()` (the rebuild path QIDO-RS uses), with
bulk data URIs made the same way; and the multipart/Accept helpers of imaging.dicom.multipart."""
from __future__ import annotations

import warnings

import pydicom
import pytest

from imaging.dicom.json_model import bulk_paths, to_dicom_json
from imaging.dicom.multipart import accept_entries, multipart_body, multipart_length
from imaging.dicom.normalize import normalize_dataset
from imaging.dicom.rebuild import dict_to_dataset
from tests.paths import DICOM_DIR

SHARED_FILES = sorted(DICOM_DIR.glob("*.dcm"))


def _normalized(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        notes = normalize_dataset(pydicom.dcmread(path, force=True))
    values, vrs = {}, {}
    for level in ("Patient", "Study", "Series", "Instance"):
        values.update(notes.levels[level])
        vrs.update(notes.vrs[level])
    values.pop("PixelData", None)
    return values, vrs


@pytest.mark.parametrize("path", SHARED_FILES, ids=[p.name for p in SHARED_FILES])
@pytest.mark.parametrize("threshold", [1 << 20, 64], ids=["1MB", "64B"])
def test_equal_to_pydicom(path, threshold):
    values, vrs = _normalized(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = dict_to_dataset({**values, "DICOMVRs": vrs}, signed=values.get("PixelRepresentation") == 1
                                   ).to_json_dict(bulk_data_threshold=threshold,
                                                  bulk_data_element_handler=lambda element: "bulk")
    assert to_dicom_json(values, vrs, bulk_uri=lambda path: "bulk", bulk_threshold=threshold) == expected


def test_bulk_uris_name_the_tag_path():
    values = {"Rows": 2, "00091010": "AAAA", "ReferencedImageSequence": [{"00091011": "AAECAw=="}],
              "DICOMVRs": {"00091010": "OB"}}
    vrs = values.pop("DICOMVRs")
    found = to_dicom_json(values, vrs, bulk_uri=lambda path: f"uri:{path}", bulk_threshold=1)
    assert found["00091010"] == {"vr": "OB", "BulkDataURI": "uri:00091010"}
    # An element without a dictionary or recorded VR is UN, binary: items are walked, paths name the item index.
    assert dict(bulk_paths(values, vrs)) == {"00091010": "AAAA", "00081140/0/00091011": "AAECAw=="}
    assert found["00081140"]["Value"][0]["00091011"] == {"vr": "UN", "BulkDataURI": "uri:00081140/0/00091011"}


def test_accept_entries_keep_order_and_unquote():
    entries = accept_entries('multipart/related; type="image/jphc"; transfer-syntax=1.2.840.10008.1.2.4.202, '
                             'multipart/related; type=application/octet-stream; transfer-syntax=*')
    assert [(e.media_type, e.part_type, e.transfer_syntax) for e in entries] == [
        ("multipart/related", "image/jphc", "1.2.840.10008.1.2.4.202"),
        ("multipart/related", "application/octet-stream", "*")]
    assert accept_entries(None) == [] and accept_entries("") == []


def test_multipart_length_is_the_body_length():
    parts = [("image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202", b"x" * 5), ("application/octet-stream", b"")]
    body = multipart_body(parts, "b0undary")
    assert body == (b"--b0undary\r\nContent-Type: image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202\r\n\r\nxxxxx"
                    b"\r\n--b0undary\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--b0undary--")
    assert multipart_length([(content_type, len(content)) for content_type, content in parts], "b0undary") == len(body)
