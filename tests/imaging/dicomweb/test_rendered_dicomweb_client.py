"""Rendered resources and thumbnails against a live server with dicomweb-client (PyPI), signing its requests with
SigV4 as in test_qido_dicomweb_client.py. dicomweb-client has no thumbnail call: those go through its session."""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from tests.clients import wait_for
from tests.imaging.dicomweb.test_qido_dicomweb_client import SigV4
from tests.importing import run_import
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.live

FILES = ["ELE__CT_small.dcm", "ELE__emri_small.dcm", "ELE__SC_rgb.dcm"]


@pytest.fixture(scope="module")
def dicomweb(server, mi, s3):
    datastore_id = mi.create_datastore(datastoreName="rendered")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    run_import(mi, s3, datastore_id, {name: DICOM_DIR / name for name in FILES})
    session = requests.Session()
    session.auth = SigV4(server.admin_key)
    return DICOMwebClient(url=f"{server.url}/datastore/{datastore_id}", session=session)


def _picture(body: bytes) -> Image.Image:
    return Image.open(io.BytesIO(body))


def test_rendered_and_thumbnails_with_dicomweb_client(dicomweb):
    ct, mr, rgb = (pydicom.dcmread(DICOM_DIR / name, stop_before_pixels=True) for name in FILES)
    uids = (ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)
    jpeg = dicomweb.retrieve_instance_rendered(*uids, media_types=("image/jpeg",))
    assert jpeg[:2] == b"\xff\xd8" and _picture(jpeg).size == (128, 128)
    png = dicomweb.retrieve_instance_rendered(*uids, media_types=("image/png",),
                                              params={"window": "40,400,LINEAR", "viewport": "64,64"})
    assert _picture(png).format == "PNG" and _picture(png).size == (64, 64)
    other = dicomweb.retrieve_instance_rendered(*uids, media_types=("image/png",),
                                                params={"window": "400,2000,LINEAR", "viewport": "64,64"})
    assert not np.array_equal(np.asarray(_picture(png)), np.asarray(_picture(other)))
    series = dicomweb.retrieve_series_rendered(ct.StudyInstanceUID, ct.SeriesInstanceUID, media_types=("image/png",))
    assert np.array_equal(np.asarray(_picture(series)),
                          np.asarray(_picture(dicomweb.retrieve_instance_rendered(*uids, media_types=("image/png",)))))
    frame = dicomweb.retrieve_instance_frames_rendered(mr.StudyInstanceUID, mr.SeriesInstanceUID, mr.SOPInstanceUID,
                                                       frame_numbers=[4], media_types=("image/png",))
    assert _picture(frame).size == (64, 64)
    colour = dicomweb.retrieve_instance_rendered(rgb.StudyInstanceUID, rgb.SeriesInstanceUID, rgb.SOPInstanceUID,
                                                 media_types=("image/png",))
    assert np.asarray(_picture(colour)).shape == (100, 100, 3)

    base = f"{dicomweb.base_url}/studies/{ct.StudyInstanceUID}"
    thumbnail = dicomweb._session.get(f"{base}/series/{ct.SeriesInstanceUID}/thumbnail",
                                      headers={"Accept": "image/jpeg"})
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"
    assert max(_picture(thumbnail.content).size) <= 128
    bad = dicomweb._session.get(f"{base}/rendered", params={"window": "40,400,CUBIC"})
    assert bad.status_code == 400 and bad.json()["__type"] == "ValidationException"
    refused = dicomweb._session.get(f"{base}/rendered", headers={"Accept": "application/dicom"})
    assert refused.status_code == 406
