"""imaging.dicom: metadata normalization (the direct raw-element path against pydicom's), the document's levels,
DICOM JSON."""
from __future__ import annotations

import csv
import io

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging.dicom.document import InstancePart, add_instances, new_document, summary
from imaging.dicom.normalize import normalize_dataset
from tests.paths import DICOM_DIR
from tests.dicomgen import ct_dataset, to_bytes


def test_normalization_rules():
    ds = ct_dataset(study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.2.3.4.5")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "DOE^JANE^^DR=ドウ^ジェーン"
    ds.ReferencedImageSequence = Sequence([Dataset(), Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.9"
    ds.ReferencedImageSequence[0].add_new(0x00091011, "DS", "2.50")
    ds.ReferencedImageSequence[1].ReferencedSOPInstanceUID = "1.2.10"
    ds.StudyDescription = ""
    ds.ExposureTime = "100"
    ds.add_new(0x00181152, "IS", "7")
    ds.add_new(0x00280106, "US", 3)  # SmallestImagePixelValue
    ds.add_new(0x00185100, "CS", "HFS")
    ds = pydicom.dcmread(io.BytesIO(to_bytes(ds)))  # values as a file carries them
    notes = normalize_dataset(ds)
    assert notes.levels["Patient"]["PatientName"] == "DOE^JANE^^DR=ドウ^ジェーン"
    study = notes.levels["Study"]
    assert study["StudyDescription"] is None and study["StudyInstanceUID"] == "1.2.3"
    assert notes.levels["Series"]["PatientPosition"] == "HFS"  # a Series-level element by SPEC 5.3
    instance = notes.levels["Instance"]
    assert instance["ExposureTime"] == "100" and instance["Exposure"] == "7"
    assert instance["SmallestImagePixelValue"] == 3
    assert instance["ImagePositionPatient"] == ["0", "0", "1"]
    assert instance["PixelSpacing"] == ["0.5", "0.5"]
    assert instance["PixelData"] is None
    assert instance["FileMetaInformationVersion"] == "AAE="
    assert instance["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    items = instance["ReferencedImageSequence"]
    assert items[0] == {"ReferencedSOPInstanceUID": "1.2.9", "00091011": "2.50", "DICOMVRs": {"00091011": "DS"}}
    assert items[1] == {"ReferencedSOPInstanceUID": "1.2.10"}
    assert notes.vrs["Instance"] == {"00091010": "LO"}


def test_lowest_instance_number_wins_at_each_level():
    def part(number: int, description: str) -> InstancePart:
        return InstancePart(series_uid="1.2.3", sop_uid=f"1.2.3.{number}", instance_number=number,
                            levels={"Patient": {}, "Study": {"StudyDescription": description}, "Series": {}},
                            level_vrs={}, instance={"DICOM": {"InstanceNumber": str(number)}})

    forward = add_instances(new_document(datastore_id="d", image_set_id="i"), [part(2, "second"), part(1, "first")])
    backward = add_instances(new_document(datastore_id="d", image_set_id="i"), [part(1, "first"), part(2, "second")])
    assert forward == backward
    assert forward["Study"]["DICOM"]["StudyDescription"] == "first"
    assert summary(forward)["number_of_instances"] == 2


def _normalized_both_ways(data: bytes, monkeypatch) -> tuple:
    """Normalization of the same bytes with the direct raw-element path and with pydicom converting everything."""
    from imaging.dicom import normalize

    results = []
    for fast in (True, False):
        monkeypatch.setattr(normalize, "FAST_PATH", fast)
        notes = normalize_dataset(pydicom.dcmread(io.BytesIO(data), force=True))
        results.append((notes.levels, notes.vrs, notes.too_long, notes.unreadable))
    return tuple(results)


ALL_SHARED = [row["file"] for row in csv.DictReader(open(DICOM_DIR / "MANIFEST.tsv"), delimiter="\t")]


@pytest.mark.parametrize("name", ALL_SHARED)
def test_direct_conversion_of_raw_elements_equals_pydicoms(name, monkeypatch):
    fast, reference = _normalized_both_ways((DICOM_DIR / name).read_bytes(), monkeypatch)
    assert fast == reference


def test_direct_conversion_covers_every_plain_vr_like_pydicom(monkeypatch):
    ds = ct_dataset(study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.2.3.4.5")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen\\Doe^J"
    ds.OtherPatientNames = "  "  # only padding
    ds.PatientComments = "line one \\ not a separator  "  # LT: one value
    ds.add_new(0x00081030, "LO", "Brain \\ Head  ")
    ds.add_new(0x00400241, "AE", " STATION1 \\ B ")
    ds.add_new(0x00101010, "AS", "045Y")
    ds.add_new(0x00181020, "LO", ["V1", "", "V3"])
    ds.add_new(0x00189313, "FD", [1.5, float("nan"), -2.0])
    ds.add_new(0x00189310, "FD", float("inf"))
    ds.add_new(0x00181623, "US", [1, 2, 3])
    ds.add_new(0x00209241, "FL", 0.25)
    ds.add_new(0x00189219, "SS", -7)
    ds.add_new(0x00720076, "SL", [-1, 2])
    ds.add_new(0x00280120, "UL", 4_000_000_000)  # read back as US or SS: left to pydicom
    ds.add_new(0x00081161, "UL", 12)
    ds.add_new(0x00620013, "SV", -(2**40))
    ds.add_new(0x0040A132, "UV", 2**40)
    ds.add_new(0x00080100, "SH", "CODE  ")
    ds.add_new(0x00081190, "UR", "https://example.org/x  ")
    ds.add_new(0x00080056, "CS", "ONLINE")
    ds.add_new(0x00200052, "UI", "1.2.3.4\x00")
    ds.add_new(0x00280034, "IS", ["1 ", " 2"])
    ds.add_new(0x00281050, "DS", [" 40.0", "1e2 ", "-.5"])
    ds.add_new(0x00181150, "IS", "1.0")  # an IS written as a float: pydicom's rules apply
    ds.add_new(0x00209164, "UI", ["1.2", "1.3"])
    ds.add_new(0x00091001, "OB", b"\x01\x02\x03\x04")
    ds.add_new(0x00091002, "UT", "private text  ")
    ds.add_new(0x00091003, "UN", b"\x05\x06")
    ds.add_new(0x00091004, "AT", 0x00100010)
    ds.add_new(0x00080110, "UC", "unlimited\\chars ")
    ds.add_new(0x0018A003, "ST", "")
    from imaging.dicom import normalize

    direct = []
    original = normalize._raw
    monkeypatch.setattr(normalize, "_raw", lambda raw, charset: direct.append(o := original(raw, charset)) or o)
    fast, reference = _normalized_both_ways(to_bytes(ds), monkeypatch)
    assert fast == reference
    assert sum(1 for converted in direct if converted is not None) >= 50  # the direct path really ran
    levels = fast[0]
    assert levels["Patient"]["PatientName"] == ["Müller^Jürgen", "Doe^J"]
    assert levels["Patient"]["OtherPatientNames"] is None
    instance = levels["Instance"]
    assert instance["WindowCenter"] == ["40.0", "1e2", "-.5"]
    assert instance["00091001"] == "AQIDBA=="


def test_other_character_sets_are_decoded_by_pydicom(monkeypatch):
    ds = ct_dataset(study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.2.3.4.5")
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Yamada^Tarou=山田^太郎"
    ds.StudyDescription = "頭部"
    fast, reference = _normalized_both_ways(to_bytes(ds), monkeypatch)
    assert fast == reference
    assert fast[0]["Patient"]["PatientName"] == "Yamada^Tarou=山田^太郎"


def test_dicom_json_becomes_normalized_metadata_at_each_level():
    from imaging.dicom.dicomjson import levels_from_dicom_json

    levels, vrs = levels_from_dicom_json({
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]},
        "00101010": {"vr": "AS", "Value": ["045Y"]},
        "00200011": {"vr": "IS", "Value": [3]},
        "00280030": {"vr": "DS", "Value": [0.5, "0.75 "]},
        "00280010": {"vr": "US", "Value": [512]},
        "00189305": {"vr": "FD", "Value": [1.5]},
        "00081030": {"vr": "LO"},
        "00091010": {"vr": "OB", "InlineBinary": "AQID"},
        "00081140": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]},
                                            "00111001": {"vr": "SS", "Value": [-1, 2]}}]},
        "00209165": {"vr": "AT", "Value": ["0020000d"]},
    })
    assert levels["Patient"] == {"PatientName": "Yamada^Tarou=山田^太郎"}
    assert levels["Study"] == {"PatientAge": "045Y", "StudyDescription": None}
    assert levels["Series"] == {"SeriesNumber": "3"}
    instance = levels["Instance"]
    assert instance["PixelSpacing"] == ["0.5", "0.75"] and instance["Rows"] == 512
    assert instance["RevolutionTime"] == 1.5 and instance["00091010"] == "AQID"
    assert instance["ReferencedImageSequence"] == [
        {"ReferencedSOPInstanceUID": "1.2.3", "00111001": [-1, 2], "DICOMVRs": {"00111001": "SS"}}]
    assert instance["DimensionIndexPointer"] == "0020000D"
    assert vrs["Instance"] == {"00091010": "OB"}


@pytest.mark.parametrize("document, message", [
    ([], "one DICOM JSON object"),
    ({"0010001": {"vr": "PN"}}, "8 hexadecimal digits"),
    ({"00100010": {"vr": "XX"}}, "unknown or missing vr"),
    ({"00020010": {"vr": "UI", "Value": ["1.2"]}}, "File Meta"),
    ({"7FE00010": {"vr": "OW", "InlineBinary": "AAAA"}}, "PixelData cannot be set"),
    ({"00100010": {"vr": "PN", "Value": [7]}}, "PN value is an object"),
    ({"00280010": {"vr": "US", "Value": ["512"]}}, "must be integers"),
    ({"00280010": {"vr": "US", "Value": 512}}, "Value must be an array"),
    ({"00091010": {"vr": "OB", "InlineBinary": "***"}}, "not base64"),
    ({"00091010": {"vr": "OB", "BulkDataURI": "http://x"}}, "BulkDataURI is not supported"),
    ({"00081140": {"vr": "SQ", "Value": ["x"]}}, "sequence items must be objects"),
])
def test_dicom_json_errors_name_the_attribute(document, message):
    from imaging.dicom.dicomjson import DicomJsonError, levels_from_dicom_json

    with pytest.raises(DicomJsonError, match=message):
        levels_from_dicom_json(document)


def test_dicom_json_sequences_cannot_nest_without_end():
    from imaging.dicom.dicomjson import DicomJsonError, levels_from_dicom_json

    document: dict = {"00081155": {"vr": "UI", "Value": ["1"]}}
    for _ in range(40):
        document = {"00081140": {"vr": "SQ", "Value": [document]}}
    with pytest.raises(DicomJsonError, match="nest more than"):
        levels_from_dicom_json(document)
