"""STOW-RS (SPEC 11.5) through the Django test client, signed with SigV4 over the real body as a DICOMweb client with
AWS credentials signs it: instances stored through the import pipeline, what the response says about each part,
the media types and bodies refused, the body limit, and a large body never held in memory."""
from __future__ import annotations

import json
import tracemalloc

import imagecodecs
import numpy as np
import pydicom
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.core.handlers.wsgi import WSGIRequest
from django.urls import resolve
from pydicom.uid import generate_uid

from imaging.models import AuditEvent, ImageSet, ImportJob, JobStatus
from imaging.services.accesskeys import accesskey_create
from imaging.services.imagesets import imageset_frame, imageset_metadata_document
from tests import personas
from tests.dicomgen import ct_dataset, to_bytes
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.django_db(transaction=True)

FILES = ["ELE__CT_small.dcm", "ELE__MR_small.dcm", "ILE__rtdose.dcm"]
BOUNDARY = "0f3cf5c0-70e0-41ef-baef-c6f9f65ec3e1"
MULTIPART = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'
RETRIEVE_URL, REFERENCED, FAILED = "00081190", "00081199", "00081198"
SOP_CLASS, SOP_INSTANCE, WARNING_REASON, FAILURE_REASON = "00081150", "00081155", "00081196", "00081197"
MIB = 1024 * 1024


def multipart(*parts: bytes, boundary: str = BOUNDARY, part_type: str = "application/dicom") -> bytes:
    """The body dicomweb-client writes."""
    body = b"".join(f"\r\n--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part for part in parts)
    return body + f"\r\n--{boundary}--".encode()


def signed_post(client, key, path: str, body: bytes, content_type: str | None, *, unsigned_payload: bool = False,
                extra: dict[str, str] | None = None):
    headers = {"Content-Type": content_type} if content_type else {}
    if unsigned_payload:
        headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
    request = AWSRequest(method="POST", url=f"http://testserver{path}", data=body, headers=headers)
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "medical-imaging", "us-east-1").add_auth(request)
    meta = {"HTTP_AUTHORIZATION": request.headers["Authorization"], "HTTP_X_AMZ_DATE": request.headers["X-Amz-Date"],
            **(extra or {})}
    if unsigned_payload:
        meta["HTTP_X_AMZ_CONTENT_SHA256"] = "UNSIGNED-PAYLOAD"
    if content_type:
        meta["CONTENT_TYPE"] = content_type  # the test client leaves it out when the body is empty
    return client.generic("POST", path, body, content_type=content_type or "", HTTP_HOST="testserver", **meta)


def uid_of(item: dict, tag: str) -> str | None:
    return (item.get(tag, {}).get("Value") or [None])[0]


@pytest.fixture
def key(datastore):
    return accesskey_create(user=personas.clinician(datastore, username="stow-clinician"))


@pytest.fixture
def studies_path(datastore) -> str:
    return f"/datastore/{datastore.id}/studies"


def test_a_single_application_dicom_instance_is_stored(client, datastore, key, studies_path, store_settings):
    source = pydicom.dcmread(DICOM_DIR / "ELE__CT_small.dcm")
    response = signed_post(client, key, studies_path, (DICOM_DIR / "ELE__CT_small.dcm").read_bytes(),
                           "application/dicom")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/dicom+json"
    answer = response.json()
    base = f"http://testserver/datastore/{datastore.id}"
    assert answer[RETRIEVE_URL] == {"vr": "UR", "Value": [f"{base}/studies/{source.StudyInstanceUID}"]}
    assert FAILED not in answer
    [item] = answer[REFERENCED]["Value"]
    assert uid_of(item, SOP_CLASS) == source.SOPClassUID and uid_of(item, SOP_INSTANCE) == source.SOPInstanceUID
    assert uid_of(item, RETRIEVE_URL) == (f"{base}/studies/{source.StudyInstanceUID}/series/"
                                          f"{source.SeriesInstanceUID}/instances/{source.SOPInstanceUID}")
    image_set = ImageSet.objects.get(datastore=datastore, study_instance_uid=source.StudyInstanceUID)
    assert image_set.is_primary
    assert_frames_bit_exact(image_set, [source])
    job = ImportJob.objects.get(datastore=datastore)  # visible in the admin as an ordinary, finished job
    assert (job.name, job.status, job.imported_files) == ("STOW-RS", JobStatus.COMPLETED, 1)
    assert not any((store_settings.DATA_DIR / "uploads").iterdir())  # parts deleted once stored
    assert not any((store_settings.DATA_DIR / "tmp").iterdir())  # the spooled body too


def test_a_multipart_body_of_several_files_is_stored_and_searchable(client, datastore, key, studies_path):
    sources = [pydicom.dcmread(DICOM_DIR / name) for name in FILES]
    body = multipart(*[(DICOM_DIR / name).read_bytes() for name in FILES])
    response = signed_post(client, key, studies_path, body, MULTIPART)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert [uid_of(item, SOP_INSTANCE) for item in answer[REFERENCED]["Value"]] == [s.SOPInstanceUID for s in sources]
    assert RETRIEVE_URL not in answer  # three studies: no one study to point at
    for source in sources:
        image_set = ImageSet.objects.get(datastore=datastore, study_instance_uid=source.StudyInstanceUID)
        assert_frames_bit_exact(image_set, [source])
    found = signed_get(client, key, f"{studies_path}")
    assert {uid_of(study, "0020000D") for study in found} == {s.StudyInstanceUID for s in sources}


def test_an_unquoted_boundary_and_no_type_parameter_are_accepted(client, key, studies_path):
    body = multipart((DICOM_DIR / "ELE__CT_small.dcm").read_bytes(), boundary="plain")
    response = signed_post(client, key, studies_path, body, "multipart/related; boundary=plain")
    assert response.status_code == 200, response.content


def test_store_study_refuses_instances_of_another_study(client, datastore, key, studies_path):
    study, other = generate_uid(), generate_uid()
    mine = ct_dataset(study_uid=study, series_uid=generate_uid())
    theirs = ct_dataset(study_uid=other, series_uid=generate_uid())
    response = signed_post(client, key, f"{studies_path}/{study}", multipart(to_bytes(mine), to_bytes(theirs)),
                           MULTIPART)
    assert response.status_code == 409
    answer = response.json()
    assert uid_of(answer, RETRIEVE_URL) == f"http://testserver/datastore/{datastore.id}/studies/{study}"
    [stored] = answer[REFERENCED]["Value"]
    assert uid_of(stored, SOP_INSTANCE) == mine.SOPInstanceUID
    [failed] = answer[FAILED]["Value"]
    assert uid_of(failed, SOP_INSTANCE) == theirs.SOPInstanceUID
    assert uid_of(failed, SOP_CLASS) == theirs.SOPClassUID
    assert uid_of(failed, FAILURE_REASON) == 0xA900
    assert not ImageSet.objects.filter(datastore=datastore, study_instance_uid=other).exists()
    assert ImageSet.objects.filter(datastore=datastore, study_instance_uid=study).exists()


def test_a_malformed_part_is_a_failure_entry_and_the_others_are_stored(client, datastore, key, studies_path):
    good = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    missing_sop = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    del missing_sop.SOPInstanceUID
    body = multipart(b"this is not a DICOM file", to_bytes(good), to_bytes(missing_sop), b"")
    response = signed_post(client, key, studies_path, body, MULTIPART)
    assert response.status_code == 409, response.content
    answer = response.json()
    assert [uid_of(item, SOP_INSTANCE) for item in answer[REFERENCED]["Value"]] == [good.SOPInstanceUID]
    failed = answer[FAILED]["Value"]
    assert [uid_of(item, FAILURE_REASON) for item in failed] == [0xC000, 0xC000, 0xC000]
    assert failed[0][SOP_INSTANCE] == {"vr": "UI"}  # nothing to name, but the attribute is there (type 1)


def test_a_part_of_another_media_type_fails_alone(client, key, studies_path):
    good = to_bytes(ct_dataset(study_uid=generate_uid(), series_uid=generate_uid()))
    body = (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + good +
            f"\r\n--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{BOUNDARY}--".encode())
    answer = signed_post(client, key, studies_path, body, MULTIPART).json()
    assert len(answer[REFERENCED]["Value"]) == 1
    assert [uid_of(item, FAILURE_REASON) for item in answer[FAILED]["Value"]] == [0xC000]


@pytest.mark.parametrize("content_type", [
    "application/json", "text/plain", None, 'multipart/related; type="application/dicom+json"; boundary=x',
    'multipart/related; type="image/jpeg"; boundary=x', "multipart/mixed; boundary=x",
])
def test_other_media_types_are_415(client, key, studies_path, content_type):
    response = signed_post(client, key, studies_path, b"{}", content_type)
    assert response.status_code == 415
    assert response.json()["__type"] == "UnsupportedMediaTypeException"


def test_an_answer_other_than_dicom_json_is_406_before_anything_is_stored(client, datastore, key, studies_path):
    body = (DICOM_DIR / "ELE__CT_small.dcm").read_bytes()
    response = signed_post(client, key, studies_path, body, "application/dicom",
                           extra={"HTTP_ACCEPT": "application/dicom+xml"})
    assert response.status_code == 406
    assert not ImportJob.objects.filter(datastore=datastore).exists()
    accepted = signed_post(client, key, studies_path, body, "application/dicom",
                           extra={"HTTP_ACCEPT": "application/dicom+json, application/json"})
    assert accepted.status_code == 200


@pytest.mark.parametrize("body,content_type,rule", [
    (b"", "application/dicom", "no DICOM instance"),
    (multipart(), MULTIPART, "no DICOM instance"),
    (b"--x\r\nContent-Type: application/dicom\r\n\r\nnever closed", "multipart/related; boundary=x",
     "close delimiter"),
    (b"", "multipart/related; type=application/dicom", "boundary"),
    (b"x", 'multipart/related; boundary="', "not closed"),
], ids=["empty", "no-parts", "unclosed", "no-boundary", "bad-content-type"])
def test_empty_or_unparseable_bodies_are_400(client, datastore, key, studies_path, body, content_type, rule):
    response = signed_post(client, key, studies_path, body, content_type)
    assert response.status_code == 400, response.content
    assert response.json()["__type"] == "ValidationException"
    assert rule in response.json()["message"]
    assert not ImportJob.objects.filter(datastore=datastore).exists()


def test_a_body_over_the_stow_limit_is_413(client, key, studies_path, settings):
    settings.APERTURE_MAX_STOW_BYTES = 64 * 1024
    body = multipart((DICOM_DIR / "ELE__CT_small.dcm").read_bytes())  # about 39 KB, then one over the limit
    assert signed_post(client, key, studies_path, body, MULTIPART).status_code == 200
    response = signed_post(client, key, studies_path, body + b"\0" * (64 * 1024), MULTIPART)
    assert response.status_code == 413
    assert response.json()["__type"] == "RequestEntityTooLargeException"


def test_bodies_over_the_api_limit_are_stow_bodies_not_request_body(client, key, studies_path, settings):
    """request.body refuses what is over DATA_UPLOAD_MAX_MEMORY_SIZE (1 MiB): STOW must never read it."""
    pixels = np.random.default_rng(1).integers(0, 4096, size=(768, 768), dtype=np.uint16)
    large = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid(), rows=768, columns=768, pixels=pixels)
    body = multipart(to_bytes(large))
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert signed_post(client, key, studies_path, body, MULTIPART).status_code == 200


def test_the_signature_covers_the_body(client, key, studies_path):
    body = multipart((DICOM_DIR / "ELE__CT_small.dcm").read_bytes())
    tampered = body.replace(b"CT", b"MR", 1)
    request = AWSRequest(method="POST", url=f"http://testserver{studies_path}", data=body,
                         headers={"Content-Type": MULTIPART})
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "medical-imaging", "us-east-1").add_auth(request)
    response = client.generic("POST", studies_path, tampered, content_type=MULTIPART, HTTP_HOST="testserver",
                              HTTP_AUTHORIZATION=request.headers["Authorization"],
                              HTTP_X_AMZ_DATE=request.headers["X-Amz-Date"])
    assert response.status_code == 403
    assert response.json()["__type"] == "InvalidSignatureException"
    wrong_hash = signed_post(client, key, studies_path, body, MULTIPART,
                             extra={"HTTP_X_AMZ_CONTENT_SHA256": "0" * 64})
    assert wrong_hash.status_code == 403
    assert signed_post(client, key, studies_path, body, MULTIPART, unsigned_payload=True).status_code == 200


def test_storing_is_a_write_the_read_only_policy_refuses(client, datastore, studies_path):
    reader = accesskey_create(user=personas.clinician(datastore, username="stow-reader"), policy=personas.READ_ONLY)
    response = signed_post(client, reader, studies_path, (DICOM_DIR / "ELE__CT_small.dcm").read_bytes(),
                           "application/dicom")
    assert response.status_code == 403
    assert "medical-imaging:StoreDICOM on resource" in response.json()["message"]
    study = generate_uid()
    response = signed_post(client, reader, f"{studies_path}/{study}", multipart(b"x"), MULTIPART)
    assert "medical-imaging:StoreDICOMStudy on resource" in response.json()["message"]
    outsider = accesskey_create(user=personas.outsider(username="stow-outsider"))
    assert signed_post(client, outsider, studies_path, b"x", "application/dicom").status_code == 403
    assert not ImportJob.objects.filter(datastore=datastore).exists()


def test_stores_are_audited_without_dicom_values(client, key, studies_path):
    study = generate_uid()
    body = multipart(to_bytes(ct_dataset(study_uid=study, series_uid=generate_uid(), patient_name="SECRET^NAME")))
    assert signed_post(client, key, f"{studies_path}/{study}", body, MULTIPART).status_code == 200
    event = AuditEvent.objects.get(event_name="StoreDICOMStudy")
    assert event.status_code == 200 and not event.read_only
    recorded = json.dumps([event.request_parameters, event.response_elements])
    assert study not in recorded and "SECRET" not in recorded
    assert event.response_elements["storedInstances"] == 1


def test_a_large_body_is_spooled_not_held(datastore, key, studies_path, store_settings, tmp_path):
    """64 MiB through the view from a file-backed WSGI input: the request's peak Python allocations stay a small
    fraction of the body (the body, its parts and the instance are all on disk)."""
    study = generate_uid()
    big = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())  # another study: refused unread (0xA900)
    big.add_new(0x00091011, "OB", b"\0" * (64 * MIB))
    body_path = tmp_path / "body"
    with open(body_path, "wb") as handle:
        handle.write(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        big.save_as(handle, enforce_file_format=True)
        handle.write(f"\r\n--{BOUNDARY}--".encode())
    del big
    path = f"{studies_path}/{study}"
    request = AWSRequest(method="POST", url=f"http://testserver{path}",
                         headers={"Content-Type": MULTIPART, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "medical-imaging", "us-east-1").add_auth(request)
    with open(body_path, "rb") as stream:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "testserver", "SERVER_PORT": "80",
                   "HTTP_HOST": "testserver", "wsgi.input": stream, "wsgi.url_scheme": "http",
                   "CONTENT_TYPE": MULTIPART, "CONTENT_LENGTH": str(body_path.stat().st_size),
                   "HTTP_AUTHORIZATION": request.headers["Authorization"],
                   "HTTP_X_AMZ_DATE": request.headers["X-Amz-Date"], "HTTP_X_AMZ_CONTENT_SHA256": "UNSIGNED-PAYLOAD"}
        wsgi_request = WSGIRequest(environ)
        view = resolve(path)
        tracemalloc.start()
        try:
            response = view.func(wsgi_request, **view.kwargs)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 409, response.content
    assert uid_of(json.loads(response.content)[FAILED]["Value"][0], FAILURE_REASON) == 0xA900
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB for a {body_path.stat().st_size / MIB:.0f} MiB body"


def signed_get(client, key, path):
    request = AWSRequest(method="GET", url=f"http://testserver{path}")
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "medical-imaging", "us-east-1").add_auth(request)
    response = client.get(path, HTTP_HOST="testserver", HTTP_AUTHORIZATION=request.headers["Authorization"],
                          HTTP_X_AMZ_DATE=request.headers["X-Amz-Date"], HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200, response.content
    return response.json()


def assert_frames_bit_exact(image_set: ImageSet, sources: list[pydicom.Dataset]) -> None:
    """Every stored frame, decoded, equals pydicom's decode of the file sent."""
    document = imageset_metadata_document(image_set=image_set)
    for source in sources:
        instance = next(series["Instances"][source.SOPInstanceUID] for series in document["Study"]["Series"].values()
                        if source.SOPInstanceUID in series["Instances"])
        frames = instance.get("ImageFrames", [])
        expected = source.pixel_array
        expected = expected.reshape((len(frames), *expected.shape[-2:])) if len(frames) else expected
        assert len(frames) == int(getattr(source, "NumberOfFrames", 1) or 1)
        for info, pixels in zip(frames, expected):
            data, media_type = imageset_frame(datastore_id=image_set.datastore_id, image_set_id=image_set.id,
                                              frame_id=info["ID"], accept=None)
            if media_type == "image/jph":
                decoded = imagecodecs.htj2k_decode(data)
            else:  # stored as received (32-bit samples, SPEC 4.5)
                assert media_type == "application/octet-stream"
                decoded = np.frombuffer(data, dtype=pixels.dtype.newbyteorder("<")).reshape(pixels.shape)
            assert np.array_equal(decoded, pixels), f"{source.SOPInstanceUID} frame {info['ID']}"
