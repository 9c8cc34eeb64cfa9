"""WADO-RS against a live server with dicomweb-client (PyPI), a client nobody here wrote, signing with SigV4 (the
SigV4 auth of test_qido_dicomweb_client): study, series and instance retrieval, metadata at every level, frames in
the stored syntax and uncompressed, bulk data. Pixels read back equal pydicom's decode of the source file, bit for
bit, and metadata values equal the source's."""
from __future__ import annotations

import base64
import hashlib

import imagecodecs
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.pixels import pixel_array

from tests.clients import wait_for
from tests.imaging.dicomweb.test_qido_dicomweb_client import SigV4
from tests.importing import run_import
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.live

# A multi-frame file, colour files (one interleaved, one planar), a plain CT, and an MR with an overlay (bulk data).
FILES = ["ELE__emri_small.dcm", "ELE__SC_rgb.dcm", "ELE__color-pl.dcm", "ELE__CT_small.dcm",
         "ELE__MR-SIEMENS-DICOM-WithOverlays.dcm"]
HTJ2K = "1.2.840.10008.1.2.4.202"


@pytest.fixture(scope="module")
def dicomweb(server, mi, s3):
    datastore_id = mi.create_datastore(datastoreName="wado-client")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    run_import(mi, s3, datastore_id, {name: DICOM_DIR / name for name in FILES})
    session = requests.Session()
    session.auth = SigV4(server.admin_key)
    return DICOMwebClient(url=f"{server.url}/datastore/{datastore_id}", session=session)


def _source(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(DICOM_DIR / name)


def _frames(source) -> list[np.ndarray]:
    pixels = pixel_array(source, as_rgb=False)
    return list(pixels) if int(source.get("NumberOfFrames", 1) or 1) > 1 else [pixels]


def _samples(frame_bytes: bytes, source) -> np.ndarray:
    dtype = np.dtype(f"{'i' if source.PixelRepresentation else 'u'}{source.BitsAllocated // 8}")
    shape = (source.Rows, source.Columns) + ((3,) if source.SamplesPerPixel == 3 else ())
    return np.frombuffer(frame_bytes, dtype=dtype).reshape(shape)


def _same_pixels(retrieved, source) -> bool:
    return np.array_equal(pixel_array(retrieved, as_rgb=False), pixel_array(source, as_rgb=False))


@pytest.mark.parametrize("name", FILES)
def test_retrieve_study_series_and_instance(dicomweb, name):
    source = _source(name)
    study, series, sop = source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID
    [from_study] = [d for d in dicomweb.retrieve_study(study) if d.SOPInstanceUID == sop]
    [from_series] = dicomweb.retrieve_series(study, series)
    instance = dicomweb.retrieve_instance(study, series, sop)
    for retrieved in (from_study, from_series, instance):
        assert retrieved.SOPInstanceUID == sop and retrieved.PatientName == source.PatientName
        assert _same_pixels(retrieved, source)


@pytest.mark.parametrize("name", FILES)
def test_metadata_at_every_level_equals_the_source(dicomweb, name):
    source = _source(name)
    study, series, sop = source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID
    [from_study] = [m for m in dicomweb.retrieve_study_metadata(study) if m["00080018"]["Value"] == [sop]]
    [from_series] = dicomweb.retrieve_series_metadata(study, series)
    instance = dicomweb.retrieve_instance_metadata(study, series, sop)
    assert from_study == from_series == instance
    dataset = pydicom.Dataset.from_json(instance)
    for keyword in ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "Rows", "Columns",
                    "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel", "PatientName",
                    "InstanceNumber", "NumberOfFrames", "PixelSpacing", "WindowCenter"):
        if keyword in source:
            assert dataset[keyword].value == source[keyword].value, keyword
    assert "7FE00010" not in instance


@pytest.mark.parametrize("name", FILES)
def test_retrieve_instance_frames_uncompressed_and_stored(dicomweb, name):
    source = _source(name)
    uids = source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID
    expected = _frames(source)
    numbers = list(range(len(expected), 0, -1))
    uncompressed = list(dicomweb.retrieve_instance_frames(*uids, frame_numbers=numbers))
    assert [np.array_equal(_samples(f, source), expected[n - 1]) for n, f in zip(numbers, uncompressed)] == \
        [True] * len(numbers)
    stored = list(dicomweb.retrieve_instance_frames(*uids, frame_numbers=[1], media_types=(("*/*", "*"),)))
    assert np.array_equal(imagecodecs.htj2k_decode(stored[0]), expected[0])
    jpeg2000 = list(dicomweb.retrieve_instance_frames(*uids, frame_numbers=[1], media_types=("image/jp2",)))
    assert np.array_equal(imagecodecs.jpeg2k_decode(jpeg2000[0]), expected[0])


def test_retrieve_bulkdata(dicomweb):
    source = _source("ELE__MR-SIEMENS-DICOM-WithOverlays.dcm")
    study, series, sop = source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID
    metadata = dicomweb.retrieve_instance_metadata(study, series, sop)
    assert base64.b64decode(metadata["60003000"]["InlineBinary"]) == source[0x60003000].value
    digest = hashlib.md5(f"{sop}/60003000".encode()).hexdigest()
    url = f"{dicomweb.base_url}/studies/{study}/series/{series}/instances/{sop}/bulkdata/{digest}"
    assert dicomweb.retrieve_bulkdata(url) == [source[0x60003000].value]
