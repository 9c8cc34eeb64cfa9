"""OHIF v3 (@ohif/app from the npm registry, bin/fetch-ohif) in Debian's Chromium against a live Aperture: the study
list shows the imported studies, the CT study opens in the Basic Viewer, and its first image is drawn from HTJ2K
frames that OHIF decodes in the browser.

OHIF is served from its own loopback origin (tests/e2e/ohif.py) and calls Aperture's DICOMweb routes across origins:
CORS (APERTURE_CORS_ORIGINS) plus `Authorization: Bearer <personal access token>` set through app-config.js, which
is how the README's "Using OHIF with Aperture" tells a deployment to do it. Nothing OHIF sends is rewritten: the
requests, their Accept headers and the answers are OHIF's and Aperture's own, recorded from the browser."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pydicom.uid import generate_uid

from tests import personas
from tests.clients import imaging_client, wait_for
from tests.dicomgen import ct_dataset, to_bytes
from tests.e2e.ohif import OhifServer, app_config, ohif_dist
from tests.importing import run_import
from tests.paths import DICOM_DIR
from tests.servers import ApertureServer

pytestmark = [pytest.mark.live, pytest.mark.slow]

SLICES = 6
SIZE = 256
HTJ2K = "1.2.840.10008.1.2.4.202"
MR_FILE = "ELE__MR_small.dcm"


def slice_pixels(n: int) -> np.ndarray:
    """A bright disc (300 HU) on air (-900 HU), growing with the slice: an image nobody could mistake for black."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    disc = ((x - SIZE // 2) ** 2 + (y - SIZE // 2) ** 2) < (50 + 4 * n) ** 2
    return np.where(disc, 1024 + 300, 1024 - 900).astype(np.uint16)


def ct_series(study_uid: str, series_uid: str) -> dict[str, bytes]:
    files = {}
    for n in range(SLICES):
        ds = ct_dataset(study_uid=study_uid, series_uid=series_uid, instance_number=n + 1, patient_name="DOE^OHIF",
                        patient_id="PID-OHIF", rows=SIZE, columns=SIZE, pixels=slice_pixels(n))
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.StudyDescription = "OHIF CT STUDY"
        ds.SeriesDescription = "AXIAL DISC"
        files[f"ct{n:02}.dcm"] = to_bytes(ds)
    return files


def bearer_token(server: ApertureServer, *, username: str, datastore_id: str) -> str:
    """A personal access token of `username`, limited to one data store (`manage.py accesstoken create --json`)."""
    done = server.manage("accesstoken", "create", "--json", "--user", username, "--datastore", datastore_id,
                         "--name", "ohif-e2e")
    return json.loads(done.stdout.strip().splitlines()[-1])["token"]


@pytest.fixture(scope="module")
def ohif(seaweed, s3):
    viewer = OhifServer(ohif_dist()).start()
    aperture = ApertureServer(extra_env={**seaweed.env(), "APERTURE_CORS_ORIGINS": viewer.url}).start()
    try:
        mi = imaging_client(aperture.url, personas.live_key(aperture))
        datastore_id = mi.create_datastore(datastoreName="ohif")["datastoreId"]
        wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"]
                 == "ACTIVE")
        study_uid, series_uid = generate_uid(), generate_uid()
        run_import(mi, s3, datastore_id, {**ct_series(study_uid, series_uid), MR_FILE: DICOM_DIR / MR_FILE})
        personas.live_clinician(aperture, datastore_id, username="ohif-reader")
        token = bearer_token(aperture, username="ohif-reader", datastore_id=datastore_id)
        viewer.configure(app_config(dicomweb_root=f"{aperture.url}/datastore/{datastore_id}", bearer_token=token))
        yield {"viewer": viewer, "aperture": aperture, "datastore": datastore_id, "study": study_uid,
               "series": series_uid}
    finally:
        aperture.stop()
        viewer.stop()


def canvas_levels(page) -> list[int] | None:
    """The gray levels of the first viewport's canvas (red channel), or None while it has none to show."""
    return page.evaluate("""() => {
        const canvas = document.querySelector('canvas.cornerstone-canvas');
        if (!canvas || !canvas.width || !canvas.height) return null;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const levels = [];
        for (let i = 0; i < data.length; i += 4) levels.push(data[i]);
        return [canvas.width, canvas.height, ...levels];
    }""")


def test_study_list_then_ct_renders_from_htj2k_frames(ohif, browser):
    aperture = ohif["aperture"]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    dicomweb, refused = [], []

    def record(response):
        if response.url.startswith(aperture.url):
            entry = {"method": response.request.method, "url": response.url, "status": response.status,
                     "accept": response.request.headers.get("accept"),
                     "bearer": response.request.headers.get("authorization", "").startswith("Bearer apt_"),
                     "type": response.headers.get("content-type", "")}
            dicomweb.append(entry)
            if response.status >= 400:
                refused.append(entry)

    page.on("response", record)
    page.on("requestfailed", lambda request: refused.append({"url": request.url, "failure": request.failure}))

    # The study list: both imported studies, from QIDO-RS with the bearer token, across origins.
    page.goto(ohif["viewer"].url + "/")
    page.wait_for_selector("text=OHIF CT STUDY", timeout=60_000)
    page.wait_for_selector("text=CompressedSamples, MR1", timeout=10_000)  # the MR study's row (PN shown "A, B")
    rows = page.inner_text("body")
    assert "DOE, OHIF" in rows and "1-2 of 2" in rows, rows
    assert not refused, refused
    searches = [e for e in dicomweb if e["url"].split("?")[0].endswith("/studies") and e["method"] == "GET"]
    assert searches and all(e["bearer"] for e in searches)

    # The CT study in the Basic Viewer.
    page.click("text=OHIF CT STUDY")
    page.click("button:has-text('Basic Viewer')")
    page.wait_for_url(f"**/viewer?*StudyInstanceUIDs={ohif['study']}*", timeout=30_000)

    def drawn():
        levels = canvas_levels(page)
        return levels is not None and max(levels[2:]) > 100

    try:
        wait_for(drawn, timeout=90, interval=0.5, what="the first CT image on the canvas")
    except AssertionError as e:  # say which DICOMweb requests OHIF was refused, the usual reason
        raise AssertionError(f"{e}; refused: {refused}; DICOMweb requests: {dicomweb[-10:]}") from None
    levels = canvas_levels(page)
    width, height, pixels = levels[0], levels[1], np.array(levels[2:], dtype=np.uint8).reshape(levels[1], levels[0])
    # the disc is bright and the air around it dark: an image, not a blank or uniformly gray canvas; and it is the
    # disc, decoded right: one round bright blob in the middle of the viewport (the image is centred in it)
    bright = pixels > 200
    assert bright.mean() > 0.02 and (pixels < 30).mean() > 0.2, (width, height)
    ys, xs = np.nonzero(bright)
    assert abs(xs.mean() - width / 2) < width * 0.05 and abs(ys.mean() - height / 2) < height * 0.05
    across, down = xs.max() - xs.min(), ys.max() - ys.min()
    assert abs(across - down) <= max(across, down) * 0.05, (across, down)
    context.close()

    frames = [e for e in dicomweb if "/frames/" in e["url"]]
    assert frames, dicomweb
    for entry in frames:
        assert entry["status"] == 200, entry
        assert "transfer-syntax=*" in entry["accept"], entry  # OHIF asks for the stored syntax ...
        assert "image/jphc" in entry["type"] and f"transfer-syntax={HTJ2K}" in entry["type"], entry  # ... HTJ2K
    metadata = [e for e in dicomweb if e["url"].endswith("/metadata")]
    assert metadata and all(e["status"] == 200 for e in metadata), metadata
    assert all(e["bearer"] for e in dicomweb), [e["url"] for e in dicomweb if not e["bearer"]]
    assert not refused, refused
