"""Admin pages for data stores and access keys, driven through Django's test client as an admin."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from imaging.models import AccessKey, Datastore

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_datastore_and_delete_only_after_typing_its_name(admin_client):
    page = admin_client.post("/admin/imaging/datastore/add/", {"name": "ward-7", "lossless_storage_format": "HTJ2K"})
    assert page.status_code == 302
    datastore = Datastore.objects.get(name="ward-7")
    assert datastore.status == "ACTIVE"  # provisioned by the background task
    confirm = f"/admin/imaging/datastore/{datastore.id}/confirm-delete/"
    assert b"Type the data store" in admin_client.get(confirm).content
    wrong = admin_client.post(confirm, {"confirm_name": "ward-8"})
    assert wrong.status_code == 200 and b"does not match" in wrong.content
    assert Datastore.objects.get(pk=datastore.id).status == "ACTIVE"
    right = admin_client.post(confirm, {"confirm_name": "ward-7"})
    assert right.status_code == 302
    assert Datastore.objects.get(pk=datastore.id).status == "DELETED"
    # The stock delete view is not available: deleting always goes through the confirmation.
    assert admin_client.post(f"/admin/imaging/datastore/{datastore.id}/delete/").status_code in (403, 302)


def test_access_key_secret_is_shown_once_and_keys_can_be_deactivated(admin_client):
    owner = get_user_model().objects.create_user("api-user")
    created = admin_client.post("/admin/imaging/accesskey/add/", {
        "user": owner.pk, "name": "pacs", "policy": "AWSHealthImagingReadOnlyAccess", "policy_document": "null"})
    assert created.status_code == 200, created.content[:500]
    key = AccessKey.objects.get(name="pacs")
    assert key.access_key_id.encode() in created.content and b"SecretAccessKey" in created.content
    secret = created.content.split(b"<td><code>")[2].split(b"</code>")[0]
    assert len(secret) == 40 and secret not in key.encrypted_secret.encode()
    change = admin_client.get(f"/admin/imaging/accesskey/{key.pk}/change/")
    assert secret not in change.content
    admin_client.post("/admin/imaging/accesskey/", {"action": "deactivate", "_selected_action": [key.pk]})
    assert AccessKey.objects.get(pk=key.pk).is_active is False


def test_admin_needs_staff(client):
    assert client.get("/admin/imaging/datastore/").status_code == 302
    assert client.get("/").status_code == 302


def test_browser_upload_import(admin_client, settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from pydicom.uid import generate_uid

    from imaging.models import ImportJob
    from tests.dicomgen import ct_bytes

    settings.DATA_DIR = tmp_path
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path / 'blobs'}"
    settings.APERTURE_IMPORT_CONCURRENCY = 0
    admin_client.post("/admin/imaging/datastore/add/", {"name": "uploads", "lossless_storage_format": "HTJ2K"})
    datastore = Datastore.objects.get(name="uploads")
    study, series = generate_uid(), generate_uid()
    files = [SimpleUploadedFile(f"{n}.dcm", ct_bytes(study_uid=study, series_uid=series, instance_number=n))
             for n in range(2)]
    response = admin_client.post(f"/admin/imaging/datastore/{datastore.id}/import-folder/",
                                 {"kind": "upload", "files": files})
    assert response.status_code == 302
    job = ImportJob.objects.get(datastore=datastore)
    assert job.status == "COMPLETED" and job.imported_files == 2
    page = admin_client.get(f"/admin/imaging/importjob/{job.id}/change/")
    assert b"numberOfImportedFiles" in page.content
    # The uploaded files existed only for the job: once it has ended they are gone from the data directory.
    assert list((tmp_path / "uploads").iterdir()) == []


def test_clinicians_and_outsiders_have_no_admin(client):
    user = get_user_model().objects.create_user("clinician-2", password="x" * 20)
    client.force_login(user)
    for url in ("/admin/", "/admin/imaging/datastore/", "/admin/imaging/auditevent/", "/admin/imaging/accesskey/"):
        assert client.get(url).status_code == 302  # to the admin login: not staff
