"""Every input that once broke a fuzz target, replayed: the files under tests/fuzz/regressions/<target>/ (found by
the fuzzers, see the README there) and the same faults built from a generated file, so each fix has a test that
does not depend on ../shared/dicom."""
from __future__ import annotations

import importlib
import io
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from imaging.dicom.document import decode_document, encode_document
from imaging.dicom.rebuild import dict_to_dataset, instance_dataset, write_p10
from imaging.dicom.uids import EXPLICIT_LE
from imaging.pipeline.process import process_bytes
from imaging.pipeline.results import FileResult
from tests.dicomgen import ct_dataset, to_bytes
from tests.fuzz.seeds import REGRESSIONS
from tests.fuzz.target_pipeline import document_of

pytestmark = pytest.mark.fuzz

SAVED = sorted(path for path in REGRESSIONS.glob("*/*") if path.is_file() and path.suffix != ".md")


@pytest.mark.parametrize("path", SAVED, ids=[f"{p.parent.name}/{p.name}" for p in SAVED])
def test_saved_crash(path: Path):
    target = importlib.import_module(f"tests.fuzz.target_{path.parent.name}")
    target.one_input(path.read_bytes())


def test_the_saved_pipeline_crashes_fail_with_their_reasons():
    reasons = {
        "meta-group-length-several-values.dcm": "FileMetaInformationGroupLength is not one UL value",
        "meta-group-length-as-bytes.dcm": "FileMetaInformationGroupLength is not one UL value",
        "rle-decoder-panic.dcm": "The pixel data cannot be decoded: index out of bounds",
        "jp2-box-of-length-0.dcm": "a JP2 file with a box of length 0",
    }
    for name, reason in reasons.items():
        result = process_bytes((REGRESSIONS / "pipeline" / name).read_bytes(), FileResult(input_file=name))
        assert (result.exception_type, reason in result.message) == ("ValidationException", True), result.message


def _ct(**changes) -> pydicom.Dataset:
    ds = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def _import(data: bytes) -> FileResult:
    return process_bytes(data, FileResult(input_file="generated.dcm"))


def _with_vr(data: bytes, tag: int, vr: bytes) -> bytes:
    """The file with the explicit VR of its element `tag` overwritten (a corrupt header)."""
    header = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    position = data.index(header, 132)
    return data[:position + 4] + vr + data[position + 6:]


def test_an_element_with_no_dicom_vr_is_read_as_un():
    """pydicom kept the VR "LM" and raised NotImplementedError on any access (InternalServerException). As UN, a
    known element is read with its dictionary VR."""
    result = _import(_with_vr(to_bytes(_ct(StudyDescription="HEAD")), 0x00081030, b"LM"))
    assert result.ok and result.levels["Study"]["StudyDescription"] == "HEAD"


def test_pixel_data_with_no_dicom_vr_fails_the_file():
    result = _import(_with_vr(to_bytes(_ct()), 0x7FE00010, b"O@"))
    # Named either way: as PixelData, or (read with a 2-byte length) as the element whose length overruns the file.
    assert result.exception_type == "ValidationException"
    assert "PixelData" in result.message or "(7FE0,0010)" in result.message


def test_empty_pixel_data_fails_the_file():
    """len(None) in the native length check (TypeError, InternalServerException)."""
    result = _import(to_bytes(_ct(PixelData=b"")))
    assert result.exception_type == "ValidationException" and "PixelData is empty" in result.message


def test_a_file_meta_group_length_of_several_values_fails_the_file():
    data = bytearray(to_bytes(_ct()))
    position = data.index(b"\x02\x00\x00\x00UL\x04\x00", 128)
    data[position + 6:position + 8] = struct.pack("<H", 8)  # two UL values: the rest of the meta group is misread
    result = _import(bytes(data))
    assert result.exception_type == "ValidationException" and result.message


def test_planar_configuration_of_several_values_fails_the_file():
    ds = _ct()
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 3, "RGB", 8, 8, 7
    ds.PixelData = bytes(64 * 64 * 3)
    ds.PlanarConfiguration = [0, 1]
    result = _import(to_bytes(ds))
    assert result.exception_type == "ValidationException" and result.message


def test_a_rust_decoder_panic_is_the_file_failure():
    """pylibjpeg-rle panics (pyo3 PanicException, a BaseException) on an RLE segment that decodes past the frame."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    ds = _ct()
    ds.file_meta.TransferSyntaxUID = RLELossless
    header = struct.pack("<16L", 2, 64, 64 + 200, *([0] * 13))
    segment = bytes([127]) + bytes(128)  # literal runs far longer than a 64x64 byte plane
    ds.PixelData = encapsulate([header + segment * 40 + segment * 40])
    result = _import(to_bytes(ds))
    assert result.exception_type == "ValidationException", result.message


def _rebuilt(result: FileResult) -> pydicom.Dataset:
    document = decode_document(encode_document(document_of(result)))
    dataset, instance = instance_dataset(document, result.series_uid, result.sop_uid)
    frames = [frame.frame_bytes for frame in result.frames]
    p10 = write_p10(dataset, transfer_syntax=instance["StoredTransferSyntaxUID"], pixel_frames=frames,
                    native=instance["StoredTransferSyntaxUID"] == EXPLICIT_LE)
    return pydicom.dcmread(io.BytesIO(p10))


def test_overlays_survive_a_rebuild_in_every_group():
    """Overlay keywords are shared by the groups 6000-601E: normalized under the keyword, two overlays landed on
    one key and the rebuild dropped them (tag_for_keyword("OverlayRows") is None)."""
    ds = _ct()
    for group, rows in ((0x6000, 64), (0x6002, 32)):
        ds.add_new((group << 16) | 0x0010, "US", rows)
        ds.add_new((group << 16) | 0x0040, "CS", "G")
        ds.add_new((group << 16) | 0x3000, "OW", bytes(rows * 64 // 8))
    result = _import(to_bytes(ds))
    assert result.ok and "60000010" in result.instance["DICOM"] and "60020010" in result.instance["DICOM"]
    reread = _rebuilt(result)
    assert reread[0x60000010].value == 64 and reread[0x60020010].value == 32


def test_values_a_file_carries_in_another_vr_rebuild_as_they_were_read():
    """A public element whose file VR is not its dictionary VR (Rows as LO) is recorded in DICOMVRs, so the
    rebuild writes it as read instead of failing GetDICOMInstance (pydicom cannot write "024Y" as US)."""
    data = to_bytes(_ct(StationName="X"))
    data = data.replace(b"\x08\x00\x10\x10SH\x02\x00X ", b"\x08\x00\x10\x10LO\x02\x00X ")
    result = _import(data)
    assert result.ok and result.level_vrs["Series"]["StationName"] == "LO"
    assert _rebuilt(result)["StationName"].VR == "LO"


def test_values_pydicom_cannot_write_in_their_vr_are_written_as_their_bytes():
    """An IS "12a", a DS "1.00=00", text where the dictionary says US, a Command Set element: each made the
    rebuild (GetDICOMInstance) raise. They are written as stored (OB bytes), and Command Set elements are left out."""
    values = {"SOPClassUID": "1.2.3", "SOPInstanceUID": "1.2.3.4", "InstanceNumber": "12a",
              "SliceThickness": ["1.00=00", "2"], "Rows": "024Y", "00000000": None, "00004C40": "x",
              "SeriesNumber": "1 \u00e9\ufffd", "PatientName": "DOE"}
    dataset = dict_to_dataset(values)
    reread = pydicom.dcmread(io.BytesIO(write_p10(dataset, transfer_syntax=EXPLICIT_LE, pixel_frames=None,
                                                  native=True)))
    assert reread["InstanceNumber"].value == b"12a " and reread["SliceThickness"].value == b"1.00=00\\2 "
    assert reread["Rows"].VR == "OB" and 0x00004C40 not in reread and str(reread.PatientName) == "DOE"


def test_updating_a_value_read_with_another_vr_gives_it_its_own_vr_again():
    """A public attribute imported with a non-dictionary VR carries a DICOMVRs entry; a new value set by
    UpdateImageSetMetadata takes the dictionary VR again (the stale entry would have written "LO" for it)."""
    from imaging.dicom.updates import apply_updates

    document = {"Patient": {"DICOM": {}}, "Study": {"DICOM": {"StudyDescription": "X"}, "Series": {"1.2": {
        "DICOM": {"StationName": "X"}, "DICOMVRs": {"StationName": "UT"}, "Instances": {}}}}}
    updated = apply_updates(document, updatable={"Study": {"Series": {"1.2": {"DICOM": {"StationName": "Y"}}}}},
                            removable=None, force=False, is_primary=False)
    series = updated["Study"]["Series"]["1.2"]
    assert series["DICOM"]["StationName"] == "Y" and "StationName" not in series.get("DICOMVRs", {})
