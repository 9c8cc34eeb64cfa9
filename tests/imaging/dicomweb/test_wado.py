"""WADO-RS retrievals (SPEC 11.3) through the Django test client, signed with SigV4, on files imported in process:
metadata, frames with their Accept negotiation, bulk data, study and series as multipart P10, and the 400, 404
and 406 cases."""
from __future__ import annotations

import base64
import hashlib
import io
import re

import imagecodecs
from asgiref.sync import async_to_sync
import numpy as np
import pydicom
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydicom.pixels import pixel_array
from pydicom.uid import generate_uid

from imaging.codecs.description import decoded_photometric
from imaging.dicom.document import decode_document
from imaging.dicom.rebuild import instance_dataset
from imaging.models import ImageSet
from imaging.services.accesskeys import accesskey_create
from imaging.services.imports import import_job_start_local
from imaging.services.wado import wado_caches_clear
from imaging.storage import blob_store
from tests import personas
from tests.dicomgen import ct_dataset, to_bytes
from tests.paths import DICOM_DIR
from tests.local_store import local_datastore_create

pytestmark = pytest.mark.django_db(transaction=True)

HTJ2K = "1.2.840.10008.1.2.4.202"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
OHIF_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
FILES = {"ct": "ELE__CT_small.dcm", "multiframe": "ELE__emri_small.dcm", "rgb": "ELE__SC_rgb.dcm",
         "planar": "ELE__color-pl.dcm", "jpeg": "JPEG50__SC_rgb_jpeg_dcmtk.dcm",
         "overlay": "ELE__MR-SIEMENS-DICOM-WithOverlays.dcm", "rtplan": "ILE__rtplan.dcm"}


class Archive:
    def __init__(self, datastore, key, series_uids):
        self.datastore, self.key, self.series_uids = datastore, key, series_uids
        self.sources = {name: pydicom.dcmread(DICOM_DIR / file) for name, file in FILES.items()}

    def base(self, dataset=None, *, study=None, series=None, sop=None) -> str:
        study = study or dataset.StudyInstanceUID
        path = f"/datastore/{self.datastore.id}/studies/{study}"
        if series or dataset is not None:
            path += f"/series/{series or dataset.SeriesInstanceUID}"
        if sop or dataset is not None:
            path += f"/instances/{sop or dataset.SOPInstanceUID}"
        return path


@pytest.fixture
def archive(store_settings, tmp_path) -> Archive:
    """The FILES of ../shared/dicom, and a generated series of three CT slices (InstanceNumber 3, 1, 2)."""
    wado_caches_clear()
    datastore = local_datastore_create()
    folder = tmp_path / "in"
    folder.mkdir()
    for file in FILES.values():
        (folder / file).write_bytes((DICOM_DIR / file).read_bytes())
    study, series = generate_uid(), generate_uid()
    for number in (3, 1, 2):
        (folder / f"slice{number}.dcm").write_bytes(to_bytes(ct_dataset(study_uid=study, series_uid=series,
                                                                         instance_number=number, seed=number)))
    import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    key = accesskey_create(user=personas.clinician(datastore, username="wado-clinician"))
    return Archive(datastore, key, {"generated": (study, series)})


def get(client, key, path, *, accept=None, host="testserver"):
    # The test client hands over no raw path; the server then signs the decoded one re-encoded, as a client
    # that sends `,` as %2C does (live clients send it raw, and the raw path is used: test_wado_dicomweb_client).
    path = path.replace(",", "%2C")
    request = AWSRequest(method="GET", url=f"http://{host}{path}")
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "medical-imaging", "us-east-1").add_auth(request)
    headers = {"HTTP_AUTHORIZATION": request.headers["Authorization"], "HTTP_X_AMZ_DATE": request.headers["X-Amz-Date"]}
    if accept:
        headers["HTTP_ACCEPT"] = accept
    response = client.get(path, HTTP_HOST=host, **headers)
    body = async_to_sync(_collected)(response.streaming_content) if response.streaming else response.content
    return response, body


async def _collected(pieces) -> bytes:
    return b"".join([piece async for piece in pieces])


def parts(response, body) -> list[tuple[str, bytes]]:
    """(Content-Type, content) of each part of a multipart/related body, checked against the SPEC 11.3 layout."""
    content_type = response["Content-Type"]
    assert content_type.startswith("multipart/related; type=")
    boundary = re.search(r"boundary=([^;]+)", content_type).group(1).encode()
    assert body.startswith(b"--" + boundary + b"\r\n") and body.endswith(b"\r\n--" + boundary + b"--")
    found = []
    for chunk in body[: -len(b"\r\n--" + boundary + b"--")].split(b"\r\n--" + boundary + b"\r\n"):
        chunk = chunk.removeprefix(b"--" + boundary + b"\r\n")
        head, _, content = chunk.partition(b"\r\n\r\n")
        found.append((head.decode().removeprefix("Content-Type: "), content))
    if "Content-Length" in response:
        assert int(response["Content-Length"]) == len(body)
    return found


def expected_frames(source) -> list[np.ndarray]:
    pixels = pixel_array(source, as_rgb=False)
    frames = int(source.get("NumberOfFrames", 1) or 1)
    return list(pixels) if frames > 1 else [pixels]


def as_samples(frame_bytes: bytes, source) -> np.ndarray:
    dtype = np.dtype(f"{'i' if source.PixelRepresentation else 'u'}{source.BitsAllocated // 8}")
    shape = (source.Rows, source.Columns) + ((3,) if source.SamplesPerPixel == 3 else ())
    return np.frombuffer(frame_bytes, dtype=dtype).reshape(shape)


# --- Metadata ---


def test_series_metadata_is_dicom_json_in_instance_order(client, archive):
    study, series = archive.series_uids["generated"]
    response, body = get(client, archive.key, f"/datastore/{archive.datastore.id}/studies/{study}/series/{series}"
                                              "/metadata")
    assert response.status_code == 200, body
    assert response["Content-Type"] == "application/dicom+json"
    objects = response.json()
    assert [o["00200013"]["Value"][0] for o in objects] == [1, 2, 3]  # InstanceNumber, IS as a number
    first = objects[0]
    assert first["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}
    assert first["0020000D"] == {"vr": "UI", "Value": [study]}
    assert first["00200032"]["Value"] == [0.0, 0.0, 1.0]  # DS as numbers
    assert "7FE00010" not in first
    assert list(first) == sorted(first)


@pytest.mark.parametrize("name", ["generated", "overlay", "multiframe", "ct", "planar"])
def test_series_metadata_equals_pydicom_on_the_merged_levels(client, archive, name):
    """Shared levels converted once and laid under each instance's own (services/wado._instance_objects) give
    what pydicom gives for each instance's merged attributes (the QIDO-RS and GetDICOMInstance path)."""
    if name == "generated":
        study, series = archive.series_uids["generated"]
    else:
        study, series = archive.sources[name].StudyInstanceUID, archive.sources[name].SeriesInstanceUID
    image_set = ImageSet.objects.get(series_instance_uid=series)
    document = decode_document(blob_store().get(image_set.versions.get(version=image_set.content_version)
                                                .metadata_key))
    response, body = get(client, archive.key, archive.base(study=study, series=series) + "/metadata")
    assert response.status_code == 200, body
    for found in response.json():
        sop = found["00080018"]["Value"][0]
        dataset, instance = instance_dataset(document, series, sop)
        if instance.get("ImageFrames") and dataset.get("SamplesPerPixel", 1) > 1:
            dataset.PhotometricInterpretation = decoded_photometric(dataset.PhotometricInterpretation)
            dataset.PlanarConfiguration = 0  # as served: interleaved, decoded (GetDICOMInstance does the same)
        assert found == dataset.to_json_dict(bulk_data_threshold=1 << 20, bulk_data_element_handler=lambda e: "")


def test_instance_and_study_metadata_equal_the_source(client, archive):
    source = archive.sources["overlay"]
    response, body = get(client, archive.key, archive.base(source) + "/metadata")
    assert response.status_code == 200, body
    [instance] = response.json()
    assert instance["00080018"]["Value"] == [source.SOPInstanceUID]
    assert instance["00280010"] == {"vr": "US", "Value": [source.Rows]}
    assert instance["00100010"]["Value"][0]["Alphabetic"] == str(source.PatientName)
    # The overlay (binary, under 1 MB) is inline, as the source has it.
    assert base64.b64decode(instance["60003000"]["InlineBinary"]) == source[0x60003000].value
    response, body = get(client, archive.key, archive.base(study=source.StudyInstanceUID) + "/metadata")
    assert response.status_code == 200
    assert [o["00080018"]["Value"][0] for o in response.json()] == [source.SOPInstanceUID]


def test_metadata_cache_answers_the_same_and_bulk_uris_follow_the_host(client, archive):
    study, series = archive.series_uids["generated"]
    path = f"/datastore/{archive.datastore.id}/studies/{study}/series/{series}/metadata"
    first = get(client, archive.key, path)[1]
    assert get(client, archive.key, path)[1] == first  # from the cache
    assert get(client, archive.key, path, host="127.0.0.1:8123")[0].status_code == 200


def test_metadata_of_unknown_uids_is_404_and_a_pin_must_hold_them(client, archive):
    source = archive.sources["ct"]
    assert get(client, archive.key, archive.base(study=source.StudyInstanceUID, series="1.2.3") + "/metadata"
               )[0].status_code == 404
    assert get(client, archive.key, archive.base(source, sop="1.2.3") + "/metadata")[0].status_code == 404
    other = ImageSet.objects.get(series_instance_uid=archive.sources["rgb"].SeriesInstanceUID)
    response, body = get(client, archive.key, archive.base(source) + f"/metadata?imageSetId={other.id}")
    assert response.status_code == 404
    own = ImageSet.objects.get(series_instance_uid=source.SeriesInstanceUID)
    assert get(client, archive.key, archive.base(source) + f"/metadata?imageSetId={own.id}")[0].status_code == 200


# --- Frames ---


@pytest.mark.parametrize("name", ["ct", "multiframe", "rgb", "planar"])
def test_uncompressed_frames_equal_the_source_pixels(client, archive, name):
    source = archive.sources[name]
    expected = expected_frames(source)
    numbers = list(range(len(expected), 0, -1))  # in reverse: parts come in request order
    response, body = get(client, archive.key, archive.base(source) + "/frames/" + ",".join(map(str, numbers)),
                         accept="multipart/related; type=application/octet-stream")
    assert response.status_code == 200, body
    assert response["Content-Type"].startswith(
        f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}; boundary=')
    found = parts(response, body)
    assert len(found) == len(numbers)
    for number, (content_type, content) in zip(numbers, found):
        assert content_type == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
        assert np.array_equal(as_samples(content, source), expected[number - 1])


@pytest.mark.parametrize("accept", [OHIF_ACCEPT, 'multipart/related; type="image/jphc"',
                                    f"multipart/related; type=image/jph; transfer-syntax={HTJ2K}",
                                    'image/jpeg, multipart/related; type="application/octet-stream"; '
                                    'transfer-syntax="*"'])
def test_stored_htj2k_frames(client, archive, accept):
    source = archive.sources["multiframe"]
    response, body = get(client, archive.key, archive.base(source) + "/frames/3", accept=accept)
    assert response.status_code == 200, body
    assert f"transfer-syntax={HTJ2K}" in response["Content-Type"]
    [(content_type, content)] = parts(response, body)
    assert content_type == f"image/jphc; transfer-syntax={HTJ2K}"
    assert np.array_equal(imagecodecs.htj2k_decode(content), expected_frames(source)[2])


def test_jpeg2000_frames_are_transcoded_losslessly(client, archive):
    source = archive.sources["rgb"]
    response, body = get(client, archive.key, archive.base(source) + "/frames/1",
                         accept="multipart/related; type=image/jp2")
    assert response.status_code == 200, body
    [(content_type, content)] = parts(response, body)
    assert content_type == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90"
    assert np.array_equal(imagecodecs.jpeg2k_decode(content), expected_frames(source)[0])


def test_lossy_frames_are_sent_as_stored_only(client, archive):
    source = archive.sources["jpeg"]
    response, body = get(client, archive.key, archive.base(source) + "/frames/1", accept=OHIF_ACCEPT)
    assert response.status_code == 200, body
    [(content_type, content)] = parts(response, body)
    assert content_type == "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    assert content == pydicom.encaps.generate_frames(source.PixelData, number_of_frames=1).__next__()
    for accept in ("multipart/related; type=application/octet-stream", "multipart/related; type=image/jphc"):
        assert get(client, archive.key, archive.base(source) + "/frames/1", accept=accept)[0].status_code == 406


@pytest.mark.parametrize("frames, status", [("0", 400), ("a", 400), ("1,1", 400), ("1,,2", 400), ("-1", 400),
                                            ("11", 404), ("1,11", 404)])
def test_bad_frame_lists(client, archive, frames, status):
    source = archive.sources["multiframe"]  # 10 frames
    response, body = get(client, archive.key, archive.base(source) + f"/frames/{frames}")
    assert response.status_code == status, body
    assert "message" in response.json()


def test_unservable_accept_is_406(client, archive):
    source = archive.sources["ct"]
    for accept in ("multipart/related; type=image/jpeg", "text/html",
                   "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.50"):
        response, _ = get(client, archive.key, archive.base(source) + "/frames/1", accept=accept)
        assert response.status_code == 406, accept
    assert get(client, archive.key, archive.base(archive.sources["rtplan"]) + "/frames/1")[0].status_code == 404


# --- Bulk data ---


def test_bulkdata_by_hash(client, archive):
    source = archive.sources["overlay"]
    digest = hashlib.md5(f"{source.SOPInstanceUID}/60003000".encode()).hexdigest()
    response, body = get(client, archive.key, archive.base(source) + f"/bulkdata/{digest}")
    assert response.status_code == 200, body
    assert response["Content-Type"] == "application/octet-stream"
    assert body == source[0x60003000].value
    response, body = get(client, archive.key, archive.base(source) + f"/bulkdata/{digest}",
                         accept="multipart/related; type=application/octet-stream")
    assert parts(response, body) == [("application/octet-stream", source[0x60003000].value)]
    assert get(client, archive.key, archive.base(source) + f"/bulkdata/{'0' * 32}")[0].status_code == 404
    assert get(client, archive.key, archive.base(source) + "/bulkdata/xyz")[0].status_code == 400


# --- Study, series and instance as P10 ---


def test_study_retrieval_is_multipart_p10(client, archive):
    study, series = archive.series_uids["generated"]
    response, body = get(client, archive.key, f"/datastore/{archive.datastore.id}/studies/{study}",
                         accept='multipart/related; type="application/dicom"')
    assert response.status_code == 200, body
    assert response["Content-Type"].startswith(
        f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}; boundary=')
    found = parts(response, body)
    datasets = [pydicom.dcmread(io.BytesIO(content)) for _, content in found]
    assert [int(d.InstanceNumber) for d in datasets] == [1, 2, 3]
    assert all(content_type == f"application/dicom; transfer-syntax={EXPLICIT_LE}" for content_type, _ in found)
    for dataset in datasets:
        original = ct_dataset(study_uid=study, series_uid=series, instance_number=int(dataset.InstanceNumber),
                              seed=int(dataset.InstanceNumber))
        assert np.array_equal(dataset.pixel_array, original.pixel_array)


def test_series_retrieval_in_stored_syntax_and_406(client, archive):
    source = archive.sources["multiframe"]
    path = archive.base(study=source.StudyInstanceUID, series=source.SeriesInstanceUID)
    response, body = get(client, archive.key, path, accept='multipart/related; type="application/dicom"; '
                                                            'transfer-syntax=*')
    assert response.status_code == 200, body
    [(content_type, content)] = parts(response, body)
    assert content_type == f"application/dicom; transfer-syntax={HTJ2K}"
    assert np.array_equal(pixel_array(pydicom.dcmread(io.BytesIO(content))), pixel_array(source))
    response, _ = get(client, archive.key, path, accept='multipart/related; type="application/dicom"; '
                                                        'transfer-syntax=1.2.840.10008.1.2.4.50')
    assert response.status_code == 406
    assert get(client, archive.key, path, accept="multipart/related; type=image/jpeg")[0].status_code == 406
    assert get(client, archive.key, archive.base(study="1.2.3"))[0].status_code == 404


def test_instance_as_one_part_multipart(client, archive):
    source = archive.sources["rgb"]
    response, body = get(client, archive.key, archive.base(source),
                         accept='multipart/related; type="application/dicom"')
    assert response.status_code == 200, body
    [(content_type, content)] = parts(response, body)
    assert content_type == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    assert np.array_equal(pixel_array(pydicom.dcmread(io.BytesIO(content))), pixel_array(source))
    response, body = get(client, archive.key, archive.base(source))
    assert response["Content-Type"] == f"application/dicom; transfer-syntax={EXPLICIT_LE}"


def test_outsiders_and_denied_image_sets_are_refused(client, archive):
    source = archive.sources["ct"]
    outsider = accesskey_create(user=personas.outsider(username="wado-outsider"))
    assert get(client, outsider, archive.base(source) + "/metadata")[0].status_code == 403
    image_set = ImageSet.objects.get(series_instance_uid=source.SeriesInstanceUID)
    denying = accesskey_create(user=personas.clinician(archive.datastore, username="wado-denied"), policy="Custom",
                               policy_document={"Version": "2012-10-17", "Statement": [
                                   {"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*"},
                                   {"Effect": "Deny", "Action": "medical-imaging:*", "Resource": image_set.arn}]})
    for suffix in ("/metadata", "/frames/1", ""):
        assert get(client, denying, archive.base(source) + suffix)[0].status_code == 403, suffix
    assert get(client, denying, archive.base(study=source.StudyInstanceUID))[0].status_code == 403
