"""STOW-RS against a live server with dicomweb-client (PyPI), a client nobody here wrote, signing each request with
SigV4 over the real body. What it stored is read back with boto3 (SearchImageSets, GetImageSetMetadata,
GetImageFrame) and QIDO-RS, and every stored frame decodes to pydicom's pixels, bit for bit."""
from __future__ import annotations

import imagecodecs
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.clients import wait_for
from tests.importing import find_instance, metadata
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.imaging.dicomweb.test_qido_dicomweb_client import SigV4
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.live

# Native, implicit VR multi-frame 32-bit (stored as received), JPEG-LS, JPEG 2000 and RLE (transcoded to HTJ2K).
FILES = ["ELE__CT_small.dcm", "ILE__rtdose.dcm", "JLS80__MR_small_jpeg_ls_lossless.dcm",
         "J2K90__MR_small_jp2klossless.dcm", "RLE__SC_rgb_rle.dcm"]


@pytest.fixture(scope="module")
def stow(server, mi):
    datastore_id = mi.create_datastore(datastoreName="stow")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    session = requests.Session()
    session.auth = SigV4(server.admin_key)
    # One request body, not chunked transfer: the SigV4 auth signs the body's bytes.
    client = DICOMwebClient(url=f"{server.url}/datastore/{datastore_id}", session=session, chunk_size=64 * 1024**2)
    return datastore_id, client


def test_store_instances_then_read_them_back_bit_exact(stow, mi):
    datastore_id, client = stow
    sources = [pydicom.dcmread(DICOM_DIR / name) for name in FILES]
    answer = client.store_instances(datasets=sources)
    stored = [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence]
    assert stored == [source.SOPInstanceUID for source in sources]
    assert "FailedSOPSequence" not in answer
    for item, source in zip(answer.ReferencedSOPSequence, sources):
        assert item.ReferencedSOPClassUID == source.SOPClassUID
        assert item.RetrieveURL.endswith(f"/studies/{source.StudyInstanceUID}/series/{source.SeriesInstanceUID}"
                                         f"/instances/{source.SOPInstanceUID}")

    for source in sources:
        found = mi.search_image_sets(datastoreId=datastore_id, searchCriteria={"filters": [
            {"values": [{"DICOMStudyInstanceUID": source.StudyInstanceUID}], "operator": "EQUAL"}]})
        [summary] = found["imageSetsMetadataSummaries"]
        assert_frames_bit_exact(mi, datastore_id, summary["imageSetId"], source)

    instances = client.search_for_instances()
    assert {i["00080018"]["Value"][0] for i in instances} == {source.SOPInstanceUID for source in sources}


def test_store_study_instances(stow):
    _, client = stow
    source = pydicom.dcmread(DICOM_DIR / "ELE__MR_small.dcm")
    answer = client.store_instances(datasets=[source], study_instance_uid=source.StudyInstanceUID)
    assert answer.RetrieveURL.endswith(f"/studies/{source.StudyInstanceUID}")
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [source.SOPInstanceUID]
    with pytest.raises(requests.HTTPError) as refused:  # dicomweb-client raises on 409 (another study: 0xA900)
        client.store_instances(datasets=[pydicom.dcmread(DICOM_DIR / "ELE__CT_small.dcm")],
                               study_instance_uid=source.StudyInstanceUID)
    assert refused.value.response.status_code == 409
    failed = pydicom.Dataset.from_json(refused.value.response.json()).FailedSOPSequence
    assert [item.FailureReason for item in failed] == [0xA900]


class UnsignedPayloadSigV4(requests.auth.AuthBase):
    """SigV4 with `X-Amz-Content-SHA256: UNSIGNED-PAYLOAD` (allowed on DICOMweb routes), for a body sent with chunked
    transfer encoding, which a signer cannot hash before sending."""

    def __init__(self, key: dict[str, str]) -> None:
        self.credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        headers = {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
        signed = AWSRequest(method=request.method, url=request.url, headers=headers)
        SigV4Auth(self.credentials, "medical-imaging", "us-east-1").add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"):
            request.headers[name] = signed.headers[name]
        return request


def test_a_chunked_body_signed_as_unsigned_payload(server, stow):
    datastore_id, _ = stow
    session = requests.Session()
    session.auth = UnsignedPayloadSigV4(server.admin_key)
    chunked = DICOMwebClient(url=f"{server.url}/datastore/{datastore_id}", session=session, chunk_size=4096)
    sources = [pydicom.dcmread(DICOM_DIR / name) for name in ("ELE__MR_small.dcm", "RLE__rtdose_rle.dcm")]
    answer = chunked.store_instances(datasets=sources)  # over 4 KiB: Transfer-Encoding: chunked
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [
        source.SOPInstanceUID for source in sources]


def assert_frames_bit_exact(mi, datastore_id: str, image_set_id: str, source: pydicom.Dataset) -> None:
    instance = find_instance(metadata(mi, datastore_id, image_set_id), source.SOPInstanceUID)
    frames = instance["ImageFrames"]
    expected = source.pixel_array.reshape((len(frames), *source.pixel_array.shape[-3 if source.SamplesPerPixel > 1
                                                                                 else -2:]))
    for info, pixels in zip(frames, expected):
        stored = mi.get_image_frame(datastoreId=datastore_id, imageSetId=image_set_id,
                                    imageFrameInformation={"imageFrameId": info["ID"]})
        data = stored["imageFrameBlob"].read()
        if stored["contentType"] == "image/jph":
            decoded = imagecodecs.htj2k_decode(data)
        else:
            assert stored["contentType"] == "application/octet-stream"  # as received (32-bit samples)
            decoded = np.frombuffer(data, dtype=pixels.dtype.newbyteorder("<")).reshape(pixels.shape)
        assert np.array_equal(decoded, pixels), f"{source.SOPInstanceUID} frame {info['ID']}"
