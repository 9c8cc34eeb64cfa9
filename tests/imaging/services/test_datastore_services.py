"""Data store services in process: the rules that need database state the API cannot create yet."""
from __future__ import annotations

import pytest

from imaging.crypto import decrypt_secret
from imaging.errors import Conflict, QuotaExceeded
from imaging.models import AccessKey, Datastore, DatastoreStatus, ImageSet, ImportJob
from imaging.services.accesskeys import accesskey_create, accesskey_for_signing
from imaging.services.datastores import datastore_create, datastore_delete
from tests import personas

pytestmark = pytest.mark.django_db(transaction=True)


def make_active_datastore() -> Datastore:
    created = datastore_create(client_token="t-" + str(Datastore.objects.count()), name="svc")
    datastore = Datastore.objects.get(pk=created["datastoreId"])
    assert datastore.status == DatastoreStatus.ACTIVE  # eager tasks ran the provisioning on commit
    return datastore


def test_delete_refused_while_image_sets_remain():
    datastore = make_active_datastore()
    image_set = ImageSet.objects.create(datastore=datastore, study_instance_uid="1.2", series_instance_uid="1.2.3")
    with pytest.raises(Conflict):
        datastore_delete(datastore_id=datastore.id)
    image_set.state = "DELETED"
    image_set.save()
    assert datastore_delete(datastore_id=datastore.id).status in (DatastoreStatus.DELETING, DatastoreStatus.DELETED)
    assert Datastore.objects.get(pk=datastore.id).status == DatastoreStatus.DELETED


def test_delete_refused_while_an_import_runs():
    datastore = make_active_datastore()
    ImportJob.objects.create(datastore=datastore, data_access_role_arn="arn:aws:iam::123456789012:role/x",
                             input_s3_uri="s3://in/", output_s3_uri="s3://out/", status="IN_PROGRESS")
    with pytest.raises(Conflict):
        datastore_delete(datastore_id=datastore.id)


def test_active_datastore_quota(settings):
    settings.APERTURE_MAX_ACTIVE_DATASTORES = 2
    make_active_datastore()
    make_active_datastore()
    with pytest.raises(QuotaExceeded):
        datastore_create(client_token="over", name="three")


def test_secrets_are_encrypted_at_rest():
    user = personas.user("keyowner")
    issued = accesskey_create(user=user)
    stored = AccessKey.objects.get(pk=issued.access_key_id)
    assert issued.secret_access_key not in stored.encrypted_secret
    assert decrypt_secret(stored.encrypted_secret) == issued.secret_access_key
    assert accesskey_for_signing(access_key_id=issued.access_key_id)[1] == issued.secret_access_key
