"""GetImageFrame's hot path (imaging/services/accesskeys.py AuthCache, imaging/services/imagesets.py imageset_frame):
keys, secrets and grant answers are kept per process, yet every change to what they were read from takes effect on
the next call, from this process or any other; the frame costs a handful of queries and its audit row is complete."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pydicom.uid import generate_uid

from imaging.crypto import encrypt_secret
from imaging.models import (AccessKey, AuditEvent, AuthGeneration, DatastoreGrant, ImageFrame, ImageSet,
                            ManagedPolicy, StorageTier)
from imaging.services.accesskeys import IssuedKey, accesskey_create, accesskey_deactivate
from imaging.services.imports import import_job_start_local
from imaging.services.users import user_deactivate
from tests import personas
from tests.dicomgen import ct_dataset, to_bytes
from tests.local_store import local_datastore_create

pytestmark = pytest.mark.django_db(transaction=True)


class Frame:
    def __init__(self, datastore, image_set, frame_id, user, key):
        self.datastore, self.image_set, self.frame_id, self.user, self.key = datastore, image_set, frame_id, user, key

    @property
    def path(self) -> str:
        return f"/datastore/{self.datastore.id}/imageSet/{self.image_set.id}/getImageFrame"


@pytest.fixture
def frame(store_settings, tmp_path, settings) -> Frame:
    settings.APERTURE_AUTH_CACHE_SECONDS = 300  # nothing expires by itself during a test
    datastore = local_datastore_create()
    folder = tmp_path / "in"
    folder.mkdir()
    ds = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="PID-HOT", patient_name="Hot^Path")
    (folder / "ct.dcm").write_bytes(to_bytes(ds))
    import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    image_set = ImageSet.objects.get(datastore=datastore)
    user = personas.clinician(datastore, username="frame-reader")
    key = accesskey_create(user=user, policy=ManagedPolicy.READ_ONLY)
    return Frame(datastore, image_set, ImageFrame.objects.get(image_set=image_set).frame_id, user, key)


def get_frame(client, frame: Frame, key: IssuedKey | None = None):
    key = key or frame.key
    body = json.dumps({"imageFrameId": frame.frame_id}).encode()
    request = AWSRequest(method="POST", url=f"http://testserver{frame.path}", data=body,
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "medical-imaging", "us-east-1").add_auth(request)
    return client.post(frame.path, data=body, content_type="application/json", HTTP_HOST="testserver",
                       HTTP_AUTHORIZATION=request.headers["Authorization"],
                       HTTP_X_AMZ_DATE=request.headers["X-Amz-Date"],
                       HTTP_X_AMZ_CONTENT_SHA256=request.headers["X-Amz-Content-SHA256"])


def error_type(response) -> str:
    return response["x-amzn-ErrorType"] if response.status_code >= 300 else ""


def another_process_changes() -> None:
    """What `manage.py` or another web process does after changing a row this process never heard of (no signal
    here): accesskeys.auth_caches_invalidate there moves the shared stamp."""
    assert AuthGeneration.objects.filter(pk=1).update(stamp=F("stamp") + 1) == 1


def test_a_warm_frame_is_three_queries_and_its_audit_row_is_complete(client, frame):
    assert get_frame(client, frame).status_code == 200  # warms the caches and touches the image set
    with CaptureQueriesContext(connection) as queries:
        response = get_frame(client, frame)
    assert response.status_code == 200 and response.content[:2] == b"\xff\x4f"
    # the AuthGeneration stamp (read once for the key and the grant), the frame joined with its image set and data
    # store, the audit row; before: key, two grant checks, data store, image set, frame, audit subject, row
    assert len(queries) == 3, [q["sql"] for q in queries]
    event = AuditEvent.objects.filter(event_name="GetImageFrame").order_by("-event_time").first()
    assert event.request_id == response["x-amzn-RequestId"]
    assert (event.patient_id, event.study_instance_uid) == ("PID-HOT", frame.image_set.study_instance_uid)
    assert (event.access_key_id, event.status_code, event.image_set_id) == (
        frame.key.access_key_id, 200, frame.image_set.id)


def test_a_frame_read_brings_the_image_set_back_to_frequent_access(client, frame):
    long_ago = timezone.now() - timedelta(days=40)
    ImageSet.objects.filter(pk=frame.image_set.pk).update(last_accessed_at=long_ago,
                                                         storage_tier=StorageTier.ARCHIVE_INSTANT_ACCESS)
    assert get_frame(client, frame).status_code == 200
    touched = ImageSet.objects.get(pk=frame.image_set.pk)
    assert touched.storage_tier == StorageTier.FREQUENT_ACCESS and touched.last_accessed_at > long_ago
    with CaptureQueriesContext(connection) as queries:
        assert get_frame(client, frame).status_code == 200
    assert not [q for q in queries if q["sql"].startswith("UPDATE")]  # read within the minute: nothing to write


def test_errors_of_the_one_query_path_are_the_ones_they_were(client, frame):
    frame.frame_id = "0" * 32
    assert error_type(get_frame(client, frame)) == "ResourceNotFoundException"
    frame.frame_id = ImageFrame.objects.get(image_set=frame.image_set).frame_id
    ImageSet.objects.filter(pk=frame.image_set.pk).update(state="DELETED")
    assert error_type(get_frame(client, frame)) == "ResourceNotFoundException"


def test_a_key_deactivated_here_is_refused_at_once(client, frame):
    assert get_frame(client, frame).status_code == 200
    accesskey_deactivate(access_key_id=frame.key.access_key_id)
    assert error_type(get_frame(client, frame)) == "UnrecognizedClientException"


def test_a_key_deactivated_by_another_process_is_refused_at_once(client, frame):
    assert get_frame(client, frame).status_code == 200
    AccessKey.objects.filter(pk=frame.key.access_key_id).update(is_active=False)  # no signal: the cache holds it
    assert get_frame(client, frame).status_code == 200, "the cached key is used while the stamp stays"
    another_process_changes()
    assert error_type(get_frame(client, frame)) == "UnrecognizedClientException"


def test_a_deactivated_user_loses_every_key(client, frame):
    assert get_frame(client, frame).status_code == 200
    user_deactivate(user=frame.user)
    assert error_type(get_frame(client, frame)) == "UnrecognizedClientException"


def test_a_rotated_secret_refuses_the_old_one(client, frame):
    assert get_frame(client, frame).status_code == 200
    key = AccessKey.objects.get(pk=frame.key.access_key_id)
    key.encrypted_secret = encrypt_secret("n" * 40)
    key.save()
    assert error_type(get_frame(client, frame)) == "InvalidSignatureException"
    assert get_frame(client, frame, IssuedKey(frame.key.access_key_id, "n" * 40)).status_code == 200


def test_a_changed_policy_applies_to_the_next_call(client, frame):
    assert get_frame(client, frame).status_code == 200
    key = AccessKey.objects.get(pk=frame.key.access_key_id)
    key.policy, key.policy_document = ManagedPolicy.CUSTOM, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "medical-imaging:GetImageSet", "Resource": "*"}]}
    key.save()
    assert error_type(get_frame(client, frame)) == "AccessDeniedException"


def test_a_removed_grant_is_denied_at_once(client, frame):
    assert get_frame(client, frame).status_code == 200
    DatastoreGrant.objects.filter(user=frame.user).delete()
    assert error_type(get_frame(client, frame)) == "AccessDeniedException"
    DatastoreGrant.objects.create(user=frame.user, datastore=frame.datastore)
    assert get_frame(client, frame).status_code == 200


def test_a_grant_removed_by_another_process_is_denied_at_once(client, frame):
    assert get_frame(client, frame).status_code == 200
    with connection.cursor() as cursor:  # behind the ORM: no signal in this process
        cursor.execute("DELETE FROM imaging_datastoregrant WHERE user_id = %s", [frame.user.pk])
    assert get_frame(client, frame).status_code == 200, "the cached grant is used while the stamp stays"
    another_process_changes()
    assert error_type(get_frame(client, frame)) == "AccessDeniedException"


def test_without_the_caches_every_change_is_read(client, frame, settings):
    settings.APERTURE_AUTH_CACHE_SECONDS = 0
    assert get_frame(client, frame).status_code == 200
    AccessKey.objects.filter(pk=frame.key.access_key_id).update(is_active=False)
    assert error_type(get_frame(client, frame)) == "UnrecognizedClientException"
