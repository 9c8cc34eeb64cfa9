"""The Django-free building blocks: HTJ2K as we write it, checksums, metadata normalization, pixel verification."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from imaging.codecs import htj2k
from imaging.codecs.ifrc import canonical_bytes, frame_checksums
from imaging.codecs.source import describe, iter_decoded_frames
from imaging.dicom.document import InstancePart, add_instances, new_document, summary
from imaging.dicom.normalize import normalize_dataset
from imaging.pipeline import transcode
from imaging.pipeline.process import process_bytes
from imaging.pipeline.results import FileResult
from tests.conftest import DICOM_DIR
from tests.dicomgen import ct_bytes, ct_dataset, to_bytes


@pytest.mark.parametrize("size, levels", [((640, 480), 3), ((512, 512), 3), ((1024, 1024), 4), ((64, 64), 0),
                                          ((127, 4000), 5), ((100, 100), 0), ((128, 128), 1), ((4096, 4096), 5)])
def test_decomposition_levels(size, levels):
    assert htj2k.decomposition_levels(*size) == levels


def markers(codestream: bytes) -> dict:
    found = {"SOT": codestream.count(b"\xff\x90")}
    position = codestream.find(b"\xff\x52")
    found["progression"] = codestream[position + 5]
    found["levels"] = codestream[position + 9]
    found["TLM"] = b"\xff\x55" in codestream[: codestream.find(b"\xff\x90")]
    siz = codestream.find(b"\xff\x51")
    found["precision"] = (codestream[siz + 2 + 38] & 0x7F) + 1
    return found


def test_codestream_is_rpcl_with_tlm_and_a_tile_part_per_resolution():
    frame = np.random.default_rng(1).integers(-1024, 3000, (512, 512)).astype(np.int16)
    codestream = htj2k.encode_lossless(frame, rgb=False)
    found = markers(codestream)
    assert found == {"SOT": 4, "progression": 2, "levels": 3, "TLM": True, "precision": 16}
    assert np.array_equal(htj2k.decode(codestream), frame)
    assert htj2k.decode(codestream, skip_levels=3).shape == (64, 64)


def test_checksums_from_base_to_full_resolution():
    frame = np.random.default_rng(2).integers(0, 4096, (480, 640)).astype(np.uint16)
    entries = frame_checksums(frame, levels=3, rct=False, bits_allocated=16, bits_stored=12, signed=False)
    assert [(e["Width"], e["Height"]) for e in entries] == [(80, 60), (160, 120), (320, 240), (640, 480)]
    assert entries[-1]["Checksum"] == zlib.crc32(frame.astype("<u2").tobytes())


def test_reduced_resolutions_equal_a_real_decoders_wherever_it_does_not_wrap():
    """OpenJPH decoding the stored codestream at reduced resolutions gives the computed bands exactly, except
    where a band leaves the container type: there it wraps (a value just below 0 comes back near 65,535), which
    is why the checksums use the computed bands."""
    from imaging.codecs.wavelet import reduced_resolutions

    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:301, 0:203]
    frame = np.where((x - 100) ** 2 + (y - 150) ** 2 < 80**2, 4000, 10).astype(np.int32)
    frame = np.clip(frame + rng.integers(-8, 9, frame.shape), 0, 4095).astype(np.uint16)
    codestream = htj2k.encode_lossless(frame, rgb=False)
    bands = reduced_resolutions(frame, htj2k.codestream_levels(codestream))
    wrapped = 0
    for skip, band in enumerate(bands, start=1):
        decoded = htj2k.decode(codestream, skip_levels=skip).astype(np.int64)
        assert decoded.shape == band.shape
        inside = (band >= 0) & (band <= 65535)
        assert np.array_equal(decoded[inside], band[inside])
        assert np.array_equal(decoded[~inside], band[~inside] % 65536)
        wrapped += int((~inside).sum())
    assert wrapped > 0  # the edge of the disc undershoots below 0


def test_reduced_resolutions_of_rgb_go_through_the_colour_transform_like_a_decoder():
    from imaging.codecs.wavelet import reduced_resolutions

    y, x = np.mgrid[0:200, 0:260]
    rgb = np.stack([(x % 200) + 20, (y % 180) + 30, ((x + y) % 150) + 40], axis=-1).astype(np.uint8)
    codestream = htj2k.encode_lossless(rgb, rgb=True)
    for skip, band in enumerate(reduced_resolutions(rgb, htj2k.codestream_levels(codestream), rct=True), start=1):
        assert 0 <= band.min() and band.max() <= 255  # a smooth image: nothing for the decoder to wrap
        assert np.array_equal(htj2k.decode(codestream, skip_levels=skip), band)


def test_rgb_checksum_interleaves_components_and_uses_one_byte():
    rgb = np.random.default_rng(3).integers(0, 256, (4, 5, 3)).astype(np.uint8)
    assert canonical_bytes(rgb, bits_allocated=8, signed=False) == rgb.tobytes()
    signed = np.array([[-1, 2]], dtype=np.int16)
    assert canonical_bytes(signed, bits_allocated=16, signed=True) == struct.pack("<hh", -1, 2)


def test_bits_above_bits_stored_are_masked():
    ds = ct_dataset(study_uid="1.2", series_uid="1.2.3", pixels=np.full((64, 64), 0xF123, dtype=np.uint16))
    ds = pydicom.dcmread(__import__("io").BytesIO(to_bytes(ds)))
    description = describe(ds, str(ds.file_meta.TransferSyntaxUID))
    frame = next(iter_decoded_frames(ds, description))
    assert int(frame.max()) == 0x123


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
    ds = pydicom.dcmread(__import__("io").BytesIO(to_bytes(ds)))  # values as a file carries them
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


def test_a_frame_that_does_not_verify_fails_the_file_as_a_server_error(monkeypatch):
    good = htj2k.encode_lossless
    monkeypatch.setattr(htj2k, "encode_lossless", lambda frame, rgb: good(frame ^ 1, rgb=rgb))
    result = process_bytes(ct_bytes(study_uid=generate_uid(), series_uid=generate_uid()), FileResult(input_file="x"))
    assert not result.ok
    assert result.exception_type == "InternalServerException"
    assert "verification failed" in result.message
    assert result.frames == [] and result.instance == {}


def test_transcode_module_imports_no_django():
    import subprocess
    import sys

    code = ("import sys; import imaging.pipeline.process, imaging.pipeline.discover, imaging.codecs.source,"
            " imaging.dicom.document;"
            "sys.exit(1 if any(m == 'django' or m.startswith('django.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=transcode.__file__.rsplit("/imaging/", 1)[0]).returncode == 0


def test_small_images_get_the_fewest_levels_the_encoder_can_write():
    frame = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
    codestream = htj2k.encode_lossless(frame, rgb=False)
    assert htj2k.codestream_levels(codestream) == 1
    assert np.array_equal(htj2k.decode(codestream), frame)


def test_signed_samples_below_the_container_are_sign_extended_and_clean_frames_are_not_copied():
    raw = np.array([[0x0FFF, 0x0800, 0x07FF, 5]], dtype=np.int16)  # 12-bit two's complement, high bits clear
    ds = ct_dataset(study_uid="1.2", series_uid="1.2.3", rows=1, columns=4, pixels=raw.view(np.uint16))
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 12, 11
    ds = pydicom.dcmread(__import__("io").BytesIO(to_bytes(ds)))
    frame = next(iter_decoded_frames(ds, describe(ds, str(ds.file_meta.TransferSyntaxUID))))
    assert frame.tolist() == [[-1, -2048, 2047, 5]]
    clean = pydicom.dcmread(__import__("io").BytesIO(ct_bytes(study_uid="1.2", series_uid="1.2.4")))
    frame = next(iter_decoded_frames(clean, describe(clean, str(clean.file_meta.TransferSyntaxUID))))
    assert not frame.flags.owndata  # a view of the PixelData bytes: nothing was rewritten


NATIVE_SHARED = [row["file"] for row in __import__("csv").DictReader(
    open(DICOM_DIR / "MANIFEST.tsv"), delimiter="\t")
    if row["ts_uid"] in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99") and row["frames"] != "0"
    and row["has_file_meta"] == "yes" and row["bits_alloc_stored"].split("/")[0] in ("8", "16")
    and row["photometric"] != "YBR_FULL_422"]


@pytest.mark.parametrize("name", NATIVE_SHARED)
def test_uncompressed_frames_read_without_pydicom_equal_pydicoms_pixels(name):
    """The view-based reader for uncompressed little-endian data must give exactly what pydicom's decoder gives."""
    from pydicom.pixels import iter_pixels

    from imaging.codecs.source import _mask, _native_frames

    ds = pydicom.dcmread(DICOM_DIR / name)
    description = describe(ds, str(ds.file_meta.TransferSyntaxUID))
    native = _native_frames(ds, description)
    assert native is not None
    expected = [_mask(np.asarray(frame), description) for frame in iter_pixels(ds, as_rgb=False)]
    assert len(native) == len(expected)
    for got, want in zip(native, expected):
        got = _mask(got, description)
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


def _normalized_both_ways(data: bytes, monkeypatch) -> tuple:
    """Normalization of the same bytes with the direct raw-element path and with pydicom converting everything."""
    from imaging.dicom import normalize

    results = []
    for fast in (True, False):
        monkeypatch.setattr(normalize, "FAST_PATH", fast)
        notes = normalize_dataset(pydicom.dcmread(__import__("io").BytesIO(data), force=True))
        results.append((notes.levels, notes.vrs, notes.too_long, notes.unreadable))
    return tuple(results)


ALL_SHARED = [row["file"] for row in __import__("csv").DictReader(open(DICOM_DIR / "MANIFEST.tsv"), delimiter="\t")]


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


@pytest.mark.parametrize("shape, signed", [((301, 203), False), ((512, 512), True), ((130, 700), False)])
def test_reduced_level_checksums_equal_an_independent_5_3_wavelet(shape, signed):
    from tests.dicomgen import reduced_resolution

    rng = np.random.default_rng(sum(shape))
    low, high = (-2048, 2047) if signed else (0, 4095)
    frame = rng.integers(low, high + 1, shape).astype(np.int16 if signed else np.uint16)
    levels = htj2k.codestream_levels(htj2k.encode_lossless(frame, rgb=False))
    entries = frame_checksums(frame, levels=levels, rct=False, bits_allocated=16, bits_stored=12, signed=signed)
    assert len(entries) == levels + 1 and levels >= 1
    for skip, entry in zip(range(levels, 0, -1), entries):
        expected = np.clip(reduced_resolution(frame, skip), low, high).astype("<i2" if signed else "<u2")
        assert (entry["Height"], entry["Width"]) == expected.shape
        assert entry["Checksum"] == zlib.crc32(expected.tobytes())


def _extreme_patterns(low: int, high: int, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Inputs that push 5/3 lifting to its largest overshoots: alternating extremes, isolated spikes, noise."""
    y, x = np.indices(shape)
    rng = np.random.default_rng(high - low)
    return {
        "checkerboard": np.where((x + y) % 2 == 0, high, low),
        "stripes": np.where((x // 2 + y // 3) % 2 == 0, high, low),
        "spikes": np.where((x % 7 == 3) & (y % 5 == 1), high, low),
        "dips": np.where((x % 4 == 1) | (y % 4 == 2), low, high),
        "noise": rng.integers(low, high + 1, shape),
    }


@pytest.mark.parametrize("bits, signed", [(8, False), (12, False), (13, False), (14, False), (15, False),
                                          (16, False), (12, True), (14, True), (16, True)])
def test_reduced_resolutions_are_exact_whatever_type_each_pass_runs_in(bits, signed):
    """Passes run in int16 where their bounds prove no overflow, in int32 otherwise: the bands equal an int64
    reference on the patterns that overshoot most, at every level, at the edge of each bit depth."""
    from imaging.codecs.wavelet import reduced_resolutions
    from tests.dicomgen import reduced_resolution

    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    dtype = (np.int8 if signed else np.uint8) if bits <= 8 else (np.int16 if signed else np.uint16)
    for name, pattern in _extreme_patterns(low, high, (197, 262)).items():
        frame = pattern.astype(dtype)
        for skip, band in enumerate(reduced_resolutions(frame, 4), start=1):
            assert band.dtype == np.int32
            assert np.array_equal(band, reduced_resolution(frame, skip)), (name, skip)


def test_int16_passes_are_chosen_only_where_they_fit():
    from imaging.codecs.wavelet import _fits_int16, _low_pass_bounds

    assert _fits_int16((0, 4095)) and _fits_int16(_low_pass_bounds((0, 4095)))  # level 1 of 12-bit data
    assert not _fits_int16((0, 65535)) and not _fits_int16((-32768, 32767)) and not _fits_int16(None)
    bounds = (0, 4095)
    for _ in range(6):
        bounds = _low_pass_bounds(bounds)
    assert not _fits_int16(bounds)  # the range grows each pass; deep levels go back to int32
