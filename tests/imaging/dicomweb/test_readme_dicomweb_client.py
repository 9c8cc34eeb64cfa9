"""The README's "Using dicomweb-client" snippets, run as written against a live server (only the host, the token and
the access key are substituted), so the documentation cannot drift from what the DICOMweb routes and the two ways of
authenticating (a personal access token, SigV4) actually do."""
from __future__ import annotations

import json

import imagecodecs
import numpy as np
import pydicom
import pytest

from tests import personas
from tests.clients import wait_for
from tests.importing import run_import
from tests.paths import DICOM_DIR, REPO_ROOT

pytestmark = pytest.mark.live

CT_FILE = "ELE__CT_small.dcm"
SECTION = "#### Using dicomweb-client"


def readme_snippets() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION):]
    section = section[:section.index("\n## ")]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def substituted(snippet: str, replacements: dict[str, str]) -> str:
    for placeholder, value in replacements.items():
        assert placeholder in snippet, f"the README snippet no longer has {placeholder!r}"
        snippet = snippet.replace(placeholder, value)
    return snippet


@pytest.fixture(scope="module")
def imported(server, mi, s3):
    datastore_id = mi.create_datastore(datastoreName="readme")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    run_import(mi, s3, datastore_id, {CT_FILE: DICOM_DIR / CT_FILE})
    personas.live_clinician(server, datastore_id, username="readme-reader")
    return datastore_id


def test_the_readme_has_both_snippets():
    [token, sigv4] = readme_snippets()
    assert "Bearer apt_" in token and "SigV4Auth" in sigv4


def test_personal_access_token_snippet(server, imported):
    source = pydicom.dcmread(DICOM_DIR / CT_FILE)
    token = server.manage("accesstoken", "create", "--user", "readme-reader", "--datastore", imported,
                          "--json").stdout.strip().splitlines()[-1]
    snippet = substituted(readme_snippets()[0], {
        "http://127.0.0.1:8000": server.url, "apt_…": json.loads(token)["token"],
        '"PID-1"': repr(str(source.PatientID))})
    scope = {"datastore_id": imported}
    exec(compile(snippet, "README.md (dicomweb-client, token)", "exec"), scope)
    assert scope["study_uid"] == source.StudyInstanceUID and scope["sop_uid"] == source.SOPInstanceUID
    expected = source.pixel_array
    assert np.array_equal(np.frombuffer(scope["raw"], dtype="<u2" if not source.PixelRepresentation else "<i2")
                          .reshape(expected.shape), expected)
    assert np.array_equal(imagecodecs.htj2k_decode(scope["htj2k"]), expected)
    assert np.array_equal(scope["instance"].pixel_array, expected)


def test_sigv4_snippet(server, imported):
    source = pydicom.dcmread(DICOM_DIR / CT_FILE, stop_before_pixels=True)
    key = server.admin_key
    snippet = substituted(readme_snippets()[1], {
        "http://127.0.0.1:8000": server.url,
        'SigV4("AKIA…", "…")': f'SigV4({key["AccessKeyId"]!r}, {key["SecretAccessKey"]!r})'})
    scope = {"datastore_id": imported, "study_uid": source.StudyInstanceUID}
    exec(compile(snippet, "README.md (dicomweb-client, SigV4)", "exec"), scope)
    assert [s["0020000E"]["Value"][0] for s in scope["series"]] == [source.SeriesInstanceUID]
