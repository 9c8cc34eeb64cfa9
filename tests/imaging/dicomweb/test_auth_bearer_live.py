"""QIDO-RS with `Authorization: Bearer` against a live server: dicomweb-client (PyPI) and plain requests, with a
personal access token made by `manage.py accesstoken create --json`, as a PACS or a script without AWS credentials
would use one."""
from __future__ import annotations

import json

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests import personas
from tests.clients import wait_for
from tests.importing import run_import
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.live

FILES = ["ELE__CT_small.dcm", "ELE__MR_small.dcm"]


def _token(server, *args: str) -> dict:
    return json.loads(server.manage("accesstoken", "create", "--json", *args).stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def archive(server, mi, s3):
    datastore_id = mi.create_datastore(datastoreName="bearer")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    run_import(mi, s3, datastore_id, {name: DICOM_DIR / name for name in FILES})
    personas.live_clinician(server, datastore_id, username="bearer-clinician")
    personas.live_outsider(server, username="bearer-outsider")
    return datastore_id


def test_dicomweb_client_searches_with_a_personal_access_token(server, archive):
    issued = _token(server, "--user", "bearer-clinician", "--datastore", archive, "--days", "1")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {issued['token']}"
    client = DICOMwebClient(url=f"{server.url}/datastore/{archive}", session=session)
    sources = [pydicom.dcmread(DICOM_DIR / name, stop_before_pixels=True) for name in FILES]
    assert {s["0020000D"]["Value"][0] for s in client.search_for_studies()} == {d.StudyInstanceUID for d in sources}
    ct = sources[0]
    series = client.search_for_series(study_instance_uid=ct.StudyInstanceUID)
    assert ct.SeriesInstanceUID in {s["0020000E"]["Value"][0] for s in series}
    assert client.search_for_studies(search_filters={"PatientID": "no such patient"}) == []


def test_bearer_refusals_over_http(server, archive):
    url = f"{server.url}/datastore/{archive}/studies"
    outsider = _token(server, "--user", "bearer-outsider")
    response = requests.get(url, headers={"Authorization": f"Bearer {outsider['token']}"}, timeout=30)
    assert response.status_code == 403 and response.json()["__type"] == "AccessDeniedException"

    issued = _token(server, "--user", "bearer-clinician")
    assert requests.get(url, headers={"Authorization": f"Bearer {issued['token']}"}, timeout=30).status_code == 200
    server.manage("accesstoken", "revoke", issued["tokenId"])
    response = requests.get(url, headers={"Authorization": f"Bearer {issued['token']}"}, timeout=30)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["__type"] == "UnauthorizedException"

    # Never on the HealthImaging API, whoever owns the token.
    admin = _token(server)
    response = requests.get(f"{server.url}/datastore", headers={"Authorization": f"Bearer {admin['token']}"},
                            timeout=30)
    assert response.status_code in (400, 403)
    assert response.headers["x-amzn-ErrorType"] in ("IncompleteSignatureException",
                                                    "MissingAuthenticationTokenException")
