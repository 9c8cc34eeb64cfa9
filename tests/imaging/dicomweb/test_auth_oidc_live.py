"""OIDC bearer tokens (issue 14 item 2b) against a live server: an issuer this test runs itself on loopback, with
its own RSA key, publishes its discovery document and JWKS; the server, started with APERTURE_OIDC_ISSUER and
APERTURE_OIDC_AUDIENCE, fetches them, and dicomweb-client searches and retrieves as the user the token names."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests import personas
from tests.clients import imaging_client, wait_for
from tests.importing import run_import
from tests.oidc_issuer import OidcIssuer, rsa_key
from tests.paths import DICOM_DIR
from tests.servers import ApertureServer

pytestmark = pytest.mark.live

NAME = "ELE__CT_small.dcm"


@pytest.fixture(scope="module")
def issuer():
    issuer = OidcIssuer()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def oidc_server(seaweed, issuer):
    server = ApertureServer(extra_env={**seaweed.env(), "APERTURE_OIDC_ISSUER": issuer.url,
                                       "APERTURE_OIDC_AUDIENCE": issuer.audience})
    server.start()
    server.admin_key = personas.live_key(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def datastore_id(oidc_server, s3):
    mi = imaging_client(oidc_server.url, oidc_server.admin_key)
    datastore_id = mi.create_datastore(datastoreName="oidc")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    run_import(mi, s3, datastore_id, {NAME: DICOM_DIR / NAME})
    personas.live_clinician(oidc_server, datastore_id, username="oidc-clinician")
    personas.live_outsider(oidc_server, username="oidc-outsider")
    return datastore_id


def _client(server, datastore_id: str, token: str) -> DICOMwebClient:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return DICOMwebClient(url=f"{server.url}/datastore/{datastore_id}", session=session)


def test_dicomweb_client_reads_with_a_jwt_of_the_configured_issuer(oidc_server, datastore_id, issuer):
    source = pydicom.dcmread(DICOM_DIR / NAME)
    client = _client(oidc_server, datastore_id, issuer.token("oidc-clinician"))
    [study] = client.search_for_studies()
    assert study["0020000D"]["Value"] == [source.StudyInstanceUID]
    [metadata] = client.retrieve_series_metadata(source.StudyInstanceUID, source.SeriesInstanceUID)
    assert metadata["00080018"]["Value"] == [source.SOPInstanceUID]
    [frame] = client.retrieve_instance_frames(source.StudyInstanceUID, source.SeriesInstanceUID,
                                              source.SOPInstanceUID, frame_numbers=[1])
    assert np.array_equal(np.frombuffer(frame, dtype=source.pixel_array.dtype).reshape(source.pixel_array.shape),
                          source.pixel_array)
    assert issuer.fetches["discovery"] >= 1 and issuer.fetches["jwks"] >= 1


def test_tokens_the_server_must_refuse(oidc_server, datastore_id, issuer):
    url = f"{oidc_server.url}/datastore/{datastore_id}/studies"

    def status(token: str) -> int:
        response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        return response.status_code

    assert status(issuer.token("oidc-clinician")) == 200
    assert status(issuer.token("oidc-clinician", lifetime=-300)) == 401  # expired beyond the leeway
    assert status(issuer.token("oidc-clinician", aud="another-client")) == 401
    assert status(issuer.token("oidc-clinician", iss="https://issuer.example.org")) == 401
    assert status(issuer.token("nobody-here")) == 401  # no such local user
    assert status(issuer.token("oidc-outsider")) == 403  # a valid identity without a grant on this data store
    # Signed with a key the issuer never published, under a published key id.
    assert status(issuer.token("oidc-clinician", key=rsa_key())) == 401
    # The HealthImaging API never accepts a bearer token.
    response = requests.get(f"{oidc_server.url}/datastore",
                            headers={"Authorization": f"Bearer {issuer.token('oidc-clinician')}"}, timeout=30)
    assert response.status_code in (400, 403)
