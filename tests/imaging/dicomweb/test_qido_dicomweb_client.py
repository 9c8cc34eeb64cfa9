"""QIDO-RS against a live server with dicomweb-client (PyPI), a client nobody here wrote, signing its requests with
SigV4 as the HealthImaging developer guide shows for DICOMweb."""
from __future__ import annotations

import pydicom
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from dicomweb_client.api import DICOMwebClient

from tests.clients import wait_for
from tests.importing import run_import
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.live

FILES = ["ELE__CT_small.dcm", "ELE__MR_small.dcm", "ILE__rtdose.dcm"]


class SigV4(requests.auth.AuthBase):
    def __init__(self, key: dict[str, str]) -> None:
        self.credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        # dicomweb-client sends its own Host header (without the port); the signature covers the one sent.
        headers = {"Host": request.headers["Host"]} if "Host" in request.headers else {}
        signed = AWSRequest(method=request.method, url=request.url, data=request.body, headers=headers)
        SigV4Auth(self.credentials, "medical-imaging", "us-east-1").add_auth(signed)
        request.headers["Authorization"] = signed.headers["Authorization"]
        request.headers["X-Amz-Date"] = signed.headers["X-Amz-Date"]
        return request


@pytest.fixture(scope="module")
def dicomweb(server, mi, s3):
    datastore_id = mi.create_datastore(datastoreName="qido")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    run_import(mi, s3, datastore_id, {name: DICOM_DIR / name for name in FILES})
    session = requests.Session()
    session.auth = SigV4(server.admin_key)
    return DICOMwebClient(url=f"{server.url}/datastore/{datastore_id}", session=session)


def test_search_every_level_with_dicomweb_client(dicomweb):
    sources = [pydicom.dcmread(DICOM_DIR / name, stop_before_pixels=True) for name in FILES]
    studies = dicomweb.search_for_studies()
    assert {s["0020000D"]["Value"][0] for s in studies} == {d.StudyInstanceUID for d in sources}
    ct = sources[0]
    found = dicomweb.search_for_studies(search_filters={"PatientID": ct.PatientID})
    assert ct.StudyInstanceUID in {s["0020000D"]["Value"][0] for s in found}
    series = dicomweb.search_for_series(study_instance_uid=ct.StudyInstanceUID)
    assert ct.SeriesInstanceUID in {s["0020000E"]["Value"][0] for s in series}
    assert {s["0020000E"]["Value"][0] for s in dicomweb.search_for_series()} == {d.SeriesInstanceUID for d in sources}
    instances = dicomweb.search_for_instances(study_instance_uid=ct.StudyInstanceUID,
                                              series_instance_uid=ct.SeriesInstanceUID)
    assert ct.SOPInstanceUID in {i["00080018"]["Value"][0] for i in instances}
    every = dicomweb.search_for_instances(fields=["all"])
    assert {i["00080018"]["Value"][0] for i in every} == {d.SOPInstanceUID for d in sources}
    assert dicomweb.search_for_studies(search_filters={"PatientID": "nobody"}) == []
    # requests sends the spaces as `+`, signed as sent (imaging/aws/sigv4.py canonical_queries)
    assert dicomweb.search_for_studies(search_filters={"PatientID": "no such patient"}) == []
    assert len(dicomweb.search_for_studies(limit=1)) == 1
