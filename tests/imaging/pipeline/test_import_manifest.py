"""Every file of ../shared/dicom imported through the API from S3: frames decode bit-exactly to pydicom's pixels,
checksums match, or the file fails with the right reason (MANIFEST.tsv drives the cases)."""
from __future__ import annotations

import csv
import zlib

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.pixels import iter_pixels

from imaging.codecs.ifrc import canonical_bytes
from tests.clients import wait_for
from tests.paths import DICOM_DIR
from tests.importing import find_instance, metadata, run_import

pytestmark = [pytest.mark.live, pytest.mark.slow]

ROWS = list(csv.DictReader(open(DICOM_DIR / "MANIFEST.tsv"), delimiter="\t"))
EXPECTED_FAILURES = {
    "ILE__OT-PAL-8-face.dcm": "DICM prefix are missing",
    "JLS81__JPEGLSNearLossless_08.dcm": "StudyInstanceUID does not exist",
    "JLS81__JPEGLSNearLossless_16.dcm": "StudyInstanceUID does not exist",
    "JLS81__SC_rgb_jls_lossy_line.dcm": "StudyInstanceUID does not exist",
    "JLS81__SC_rgb_jls_lossy_sample.dcm": "StudyInstanceUID does not exist",
    "JPEG51__JPEG-lossy.dcm": "pixel data cannot be decoded",
    "JPEG70__bad_sequence.dcm": "StudyID has length 64, more than the allowed 16",
}
AS_RECEIVED = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"}


def partitions(rows: list[dict]) -> list[list[dict]]:
    """Groups in which no SOP Instance UID repeats, so every file's instance survives its import."""
    groups: list[tuple[set[str], list[dict]]] = []
    for row in rows:
        for uids, members in groups:
            if row["sop_instance_uid"] not in uids:
                uids.add(row["sop_instance_uid"])
                members.append(row)
                break
        else:
            groups.append(({row["sop_instance_uid"]}, [row]))
    return [members for _, members in groups]


@pytest.fixture(scope="module")
def imported(mi, s3):
    results: dict[str, tuple[str, dict]] = {}
    for group in partitions(ROWS):
        datastore_id = mi.create_datastore(datastoreName="manifest")["datastoreId"]
        wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
        outcome = run_import(mi, s3, datastore_id, {row["file"]: DICOM_DIR / row["file"] for row in group})
        assert outcome.job["jobStatus"] == "COMPLETED", outcome.job
        assert outcome.summary["numberOfScannedFiles"] == len(group)
        for row in group:
            results[row["file"]] = (datastore_id, outcome.line_for(row["file"]))
    return results


def decode_stored(data: bytes, syntax: str, frame_shape, dtype) -> np.ndarray:
    if syntax == "1.2.840.10008.1.2.4.202":
        return imagecodecs.htj2k_decode(data, planar=False)
    assert syntax == "1.2.840.10008.1.2.1"
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(frame_shape)


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_file_imports_bit_exact_or_fails_clearly(mi, imported, row):
    datastore_id, line = imported[row["file"]]
    expected_failure = EXPECTED_FAILURES.get(row["file"])
    if expected_failure:
        assert "exception" in line, line
        assert line["exception"]["exceptionType"] == "ValidationException"
        assert expected_failure in line["exception"]["message"]
        return
    assert "importResponse" in line, line
    response = line["importResponse"]
    document = metadata(mi, datastore_id, response["imageSetId"])
    instance = find_instance(document, row["sop_instance_uid"])
    source = pydicom.dcmread(DICOM_DIR / row["file"])
    if int(row["frames"] or 0) == 0:
        assert "ImageFrames" not in instance
        assert instance["DICOM"]["SOPInstanceUID"] == row["sop_instance_uid"]
        return

    frames = instance["ImageFrames"]
    assert len(frames) == int(row["frames"])
    syntax = instance["StoredTransferSyntaxUID"]
    assert instance["DICOM"]["TransferSyntaxUID"] == row["ts_uid"]
    assert instance["DICOM"]["PixelData"] is None
    if syntax in AS_RECEIVED:
        encoded = list(generate_frames(source.PixelData, number_of_frames=len(frames)))
        for info, original in zip(frames, encoded):
            stored = mi.get_image_frame(datastoreId=datastore_id, imageSetId=response["imageSetId"],
                                        imageFrameInformation={"imageFrameId": info["ID"]})
            assert stored["imageFrameBlob"].read() == original
        return

    bits_allocated = int(row["bits_alloc_stored"].split("/")[0])
    signed = row["signed"] == "yes"
    for info, expected in zip(frames, iter_pixels(source, as_rgb=False)):
        expected = np.asarray(expected)
        stored = mi.get_image_frame(datastoreId=datastore_id, imageSetId=response["imageSetId"],
                                    imageFrameInformation={"imageFrameId": info["ID"]})
        content_type = stored["contentType"]
        assert content_type == ("image/jph" if syntax.endswith(".202") else "application/octet-stream")
        if bits_allocated == 1:
            continue  # binary segmentation frames are stored packed, exactly as received
        decoded = decode_stored(stored["imageFrameBlob"].read(), syntax, expected.shape, expected.dtype)
        assert decoded.shape == expected.shape
        assert np.array_equal(decoded, expected), f"frame {info['ID']} differs from pydicom's pixels"
        full = info.get("PixelDataChecksumFromBaseToFullResolution")
        if full:
            crc = zlib.crc32(canonical_bytes(expected, bits_allocated=bits_allocated, signed=signed))
            assert full[-1] == {"Width": expected.shape[1], "Height": expected.shape[0], "Checksum": crc}
            assert info["MinPixelValue"] == int(expected.min()) and info["MaxPixelValue"] == int(expected.max())
