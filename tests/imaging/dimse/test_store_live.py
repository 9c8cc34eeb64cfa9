"""C-STORE into a data store by its AE title, with dcmtk's storescu as the modality: every shared test file, one
import job per association with the calling AE, pixels read back bit for bit, a broken file that fails alone, and
a SIGTERM in the middle of an association that loses nothing acknowledged."""
from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array
from pydicom.uid import generate_uid

from tests.clients import imaging_client, wait_for
from tests.dicomweb import instance_url, signed_get
from tests.dimse import DicomListener, datastore_ae_set, dcmtk, import_jobs
from tests.paths import DICOM_DIR
from tests.servers import ApertureServer

pytestmark = pytest.mark.live

AE = "STORE1"
# storescu proposes one family of compressed syntaxes at a time (plus the uncompressed ones): one association per
# family, by the file name's transfer-syntax key (../shared/dicom/README.md).
FAMILIES = {
    "uncompressed": (("ILE", "ELE", "EBE"), ()),
    "deflated": (("DEFL",), ("-xd",)),
    "jpeg-baseline": (("JPEG50",), ("-xy",)),
    "jpeg-extended": (("JPEG51",), ("-xx",)),
    "jpeg-lossless": (("JPEG70",), ("-xs",)),
    "jpeg-ls": (("JLS80",), ("-xt",)),
    "jpeg-ls-near": (("JLS81",), ("-xu",)),
    "j2k-lossless": (("J2K90",), ("-xv",)),
    "j2k": (("J2K91",), ("-xw",)),
    "rle": (("RLE",), ("-xr",)),
}
# Refused at C-STORE (0xC001: no StudyInstanceUID/SeriesInstanceUID in the file).
REFUSED = {"JLS81__JPEGLSNearLossless_08.dcm", "JLS81__JPEGLSNearLossless_16.dcm",
           "JLS81__SC_rgb_jls_lossy_line.dcm", "JLS81__SC_rgb_jls_lossy_sample.dcm"}
# storescu itself will not send it (no SOP class UID it can find).
NOT_SENT = {"RLE__rtdose_rle.dcm"}
# Acknowledged, then failed by the import job (its manifest says why): the broken JPEG stream and the invalid
# sequence of the README's edge cases.
IMPORT_FAILS = {"JPEG51__JPEG-lossy.dcm", "JPEG70__bad_sequence.dcm"}
# Read back and compared with pydicom's pixels of the original (SOP instance UIDs that occur once in the set).
BIT_EXACT = ["ELE__CT_small.dcm", "JPEG70__JPEG-LL.dcm", "J2K90__US1_J2KR.dcm", "ILE__RTImageStorage.dcm",
             "JPEG50__color3d_jpeg_baseline.dcm", "RLE__OBXXXX1A_rle_2frame.dcm"]

LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"}


@pytest.fixture(scope="module")
def server():
    instance = ApertureServer().start()
    instance.key = instance.create_key()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def mi(server):
    return imaging_client(server.url, server.key)


def datastore_with_ae(server, mi, ae_title: str) -> str:
    datastore_id = mi.create_datastore(datastoreName=f"dimse-{ae_title.lower()}")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    datastore_ae_set(server, datastore_id, ae_title)
    return datastore_id


@pytest.fixture(scope="module")
def datastore_id(server, mi):
    return datastore_with_ae(server, mi, AE)


@pytest.fixture(scope="module")
def listener(server):
    instance = DicomListener(server).start()
    yield instance
    instance.stop()


def responses(output: str) -> dict[str, str]:
    """What storescu -v says the answer to each file was: {file name: "Success" | "Error: ..." | ...}."""
    answers, current = {}, None
    for line in output.splitlines():
        sending = re.search(r"Sending file: (.+)$", line)
        if sending:
            current = Path(sending.group(1).strip()).name
        answer = re.search(r"Received Store Response \((.+)\)", line)
        if answer and current:
            answers[current] = answer.group(1)
            current = None
    return answers


def jobs_ended(server, datastore_id: str, count: int) -> list[dict]:
    def ended():
        jobs = import_jobs(server, datastore_id)
        return jobs if len(jobs) >= count and all(j["status"] in ("COMPLETED", "FAILED") for j in jobs) else None
    return wait_for(ended, timeout=120, interval=1.0, what=f"{count} import jobs ended")


@pytest.fixture(scope="module")
def stored(server, listener, datastore_id):
    """Every shared file (the top folder), one association per family; what storescu was told for each."""
    answers = {}
    for prefixes, options in FAMILIES.values():
        files = sorted(path for prefix in prefixes for path in DICOM_DIR.glob(f"{prefix}__*.dcm"))
        result = listener.storescu(*files, called=AE, extra=("-nh", "-R", *options))
        answers.update(responses(result.stdout + result.stderr))
    # The JPEG-LS near-lossless association stored nothing: no job.
    jobs = jobs_ended(server, datastore_id, len(FAMILIES) - 1)
    return answers, jobs


def test_every_file_is_answered_as_its_header_deserves(stored):
    answers, _ = stored
    every = {path.name for path in DICOM_DIR.glob("*.dcm")}
    assert set(answers) == every - NOT_SENT
    refused = {name for name, answer in answers.items() if answer != "Success"}
    assert refused == REFUSED, answers
    assert all("CannotUnderstand" in answers[name] for name in REFUSED)


def test_one_job_per_association_with_the_calling_ae(stored, server):
    answers, jobs = stored
    assert len(jobs) == len(FAMILIES) - 1
    assert {job["name"] for job in jobs} == {"C-STORE from STORESCU"}
    assert {(job["calling_ae_title"], job["calling_address"]) for job in jobs} == {("STORESCU", "127.0.0.1")}
    assert all(job["status"] == "COMPLETED" for job in jobs), jobs
    acknowledged = sum(1 for answer in answers.values() if answer == "Success")
    assert sum(job["imported"] for job in jobs) == acknowledged - len(IMPORT_FAILS)
    assert sum(job["failed"] for job in jobs) == len(IMPORT_FAILS)
    # Each job's spool folder went with it; nothing is left half-received.
    uploads = server.data_dir / "uploads"
    assert sorted(path.name for path in uploads.iterdir()) == ["dimse-incoming"]
    assert not any((uploads / "dimse-incoming").iterdir())


@pytest.mark.parametrize("name", BIT_EXACT)
def test_pixels_read_back_bit_for_bit(stored, server, datastore_id, name):
    source = pydicom.dcmread(DICOM_DIR / name)
    url = instance_url(server.url, datastore_id, source.StudyInstanceUID, source.SeriesInstanceUID,
                       source.SOPInstanceUID)
    syntax = source.file_meta.TransferSyntaxUID
    # Lossy frames are kept as received and served in their own syntax; lossless ones are served as Explicit VR LE.
    accept = f"application/dicom; transfer-syntax={syntax}" if syntax in LOSSY else None
    status, _, body = signed_get(url, server.key, accept=accept)
    assert status == 200, body[:300]
    rebuilt = pydicom.dcmread(io.BytesIO(body))
    assert rebuilt.SOPInstanceUID == source.SOPInstanceUID
    assert np.array_equal(pixel_array(rebuilt, as_rgb=False), pixel_array(source, as_rgb=False))


def generated_ct(folder: Path, count: int, *, study: str | None = None, broken_at: int | None = None) -> list[Path]:
    """`count` copies of CT_small as new instances of one new series; the one at `broken_at` has Rows 0."""
    study = study or generate_uid()
    series = generate_uid()
    paths = []
    for number in range(count):
        dataset = pydicom.dcmread(DICOM_DIR / "ELE__CT_small.dcm")
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.InstanceNumber = number + 1
        if number == broken_at:
            dataset.Rows = 0
        path = folder / f"ct-{number:03d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_a_broken_file_fails_alone(server, mi, listener, tmp_path):
    datastore_id = datastore_with_ae(server, mi, "BROKEN1")
    files = generated_ct(tmp_path, 5, broken_at=2)
    result = listener.storescu(*files, called="BROKEN1", extra=("-nh",))
    answers = responses(result.stdout + result.stderr)
    assert [answers[path.name] for path in files] == ["Success", "Success", "Error: CannotUnderstand", "Success",
                                                      "Success"], result.stderr
    [job] = jobs_ended(server, datastore_id, 1)
    assert (job["status"], job["imported"], job["failed"]) == ("COMPLETED", 4, 0)


def test_sigterm_in_an_association_loses_nothing_acknowledged(server, mi, tmp_path):
    """The listener is stopped (no grace: the association is aborted) while storescu is sending; every instance it
    acknowledged is imported."""
    datastore_id = datastore_with_ae(server, mi, "SIGTERM1")
    files = generated_ct(tmp_path, 150)
    listener = DicomListener(server, extra_env={"APERTURE_DICOM_SHUTDOWN_SECONDS": "0"}).start()
    try:
        sender = subprocess.Popen(
            [dcmtk("storescu"), "-v", "-nh", "-aet", "STORESCU", "-aec", "SIGTERM1", "127.0.0.1", str(listener.port),
             *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in sender.stdout:
            seen.append(line)
            if sum("Received Store Response (Success)" in text for text in seen) >= 20:
                break
        assert listener.stop(timeout=60) == 0
        seen.extend(sender.stdout)
        sender.wait(30)
    finally:
        listener.stop()
    answers = responses("".join(seen))
    acknowledged = {name for name, answer in answers.items() if answer == "Success"}
    assert len(acknowledged) >= 20
    [job] = jobs_ended(server, datastore_id, 1)
    assert job["status"] == "COMPLETED"
    # The instance in flight when the association was aborted may have been kept too, never acknowledged.
    assert len(acknowledged) <= job["imported"] <= len(acknowledged) + 1
    for path in files:
        if path.name in acknowledged:
            source = pydicom.dcmread(path, stop_before_pixels=True)
            url = instance_url(server.url, datastore_id, source.StudyInstanceUID, source.SeriesInstanceUID,
                               source.SOPInstanceUID)
            assert signed_get(url, server.key)[0] == 200, path.name
