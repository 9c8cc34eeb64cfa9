"""Admin pages for data stores, access keys, image sets and share links, driven through Django's test client as an
admin."""
from __future__ import annotations

import pytest

from imaging.models import AccessKey, Datastore
from tests import personas

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
    owner = personas.user("api-user")
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


@pytest.fixture
def upload_datastore(admin_client, settings, tmp_path) -> Datastore:
    """A data store made through the admin, with imports run in the calling thread into tmp_path."""
    settings.DATA_DIR = tmp_path
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path / 'blobs'}"
    settings.APERTURE_IMPORT_CONCURRENCY = 0
    admin_client.post("/admin/imaging/datastore/add/", {"name": "uploads", "lossless_storage_format": "HTJ2K"})
    return Datastore.objects.get(name="uploads")


def test_browser_upload_import(admin_client, upload_datastore, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from pydicom.uid import generate_uid
    datastore = upload_datastore

    from imaging.models import ImportJob
    from tests.dicomgen import ct_bytes

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
    user = personas.clinician(username="clinician-2", password="x" * 20)
    client.force_login(user)
    for url in ("/admin/", "/admin/imaging/datastore/", "/admin/imaging/auditevent/", "/admin/imaging/accesskey/"):
        assert client.get(url).status_code == 302  # to the admin login: not staff


def share_link_form(viewer_data, **fields) -> dict:
    return {"datastore": viewer_data.datastore.id, "study_instance_uid": "", "image_set_id": "",
            "expires_in_hours": 24, "initial_series": "", "window_preset": "", **fields}


def test_share_link_for_an_unknown_study_is_a_form_error(admin_client, viewer_data):
    from imaging.models import ShareLink

    page = admin_client.post("/admin/imaging/sharelink/add/", share_link_form(viewer_data, study_instance_uid="1.2.3"))
    assert page.status_code == 200
    assert b"No such study in this data store" in page.content
    unknown_set = admin_client.post("/admin/imaging/sharelink/add/",
                                    share_link_form(viewer_data, image_set_id="0" * 32))
    assert unknown_set.status_code == 200 and b"No such image set in this data store" in unknown_set.content
    too_long = admin_client.post("/admin/imaging/sharelink/add/",
                                 share_link_form(viewer_data, study_instance_uid=viewer_data.study_uid,
                                                 expires_in_hours=24 * 365))
    assert too_long.status_code == 200 and b"errorlist" in too_long.content
    assert not ShareLink.objects.exists()


def test_share_link_created_shows_the_absolute_link_with_a_copy_button(admin_client, viewer_data):
    from imaging.models import ShareLink

    created = admin_client.post("/admin/imaging/sharelink/add/",
                                share_link_form(viewer_data, study_instance_uid=viewer_data.study_uid), follow=True)
    assert created.status_code == 200
    link = ShareLink.objects.get()
    page = created.content.decode()
    assert "ShareLink object" not in page
    message = page.split('class="success"')[1].split("</li>")[0]
    assert "Share link created" in message and 'value="http://testserver/share/' in message
    assert "data-copy-link" in message and "copy_link.js" in page
    token = message.split('value="http://testserver/share/')[1].split("/")[0]
    from imaging.services.sharing import share_link_resolve
    assert share_link_resolve(token) == link


def test_storage_by_tier_shows_counts_and_bytes(admin_client, viewer_data):
    from imaging.models import ImageFrame

    page = admin_client.get(f"/admin/imaging/datastore/{viewer_data.datastore.id}/change/").content.decode()
    table = page.split("Image sets and bytes per storage tier")[1].split("</table>")[0]
    total = sum(ImageFrame.objects.filter(image_set__datastore=viewer_data.datastore).values_list("size", flat=True))
    assert "<td>FREQUENT_ACCESS</td><td>2</td>" in table
    assert f"<td>{total:,} bytes</td>" in table and total > 1000


def test_import_page_shows_no_errors_before_any_input(admin_client, viewer_data):
    page = admin_client.get(f"/admin/imaging/datastore/{viewer_data.datastore.id}/import-folder/")
    assert page.status_code == 200
    assert b"This field is required" not in page.content and b"errorlist" not in page.content
    submitted = admin_client.post(f"/admin/imaging/datastore/{viewer_data.datastore.id}/import-folder/",
                                  {"kind": "folder", "folder": ""})
    assert submitted.content.count(b"This field is required") == 1  # only the form that was sent


def test_uploaded_files_keep_their_names_and_failure_reasons_are_whole(admin_client, upload_datastore):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from pydicom.uid import generate_uid
    datastore = upload_datastore

    from imaging.models import ImportJob
    from imaging.services.imports import manifest_summary
    from tests.paths import DICOM_DIR
    from tests.dicomgen import ct_bytes

    study = generate_uid()
    files = [SimpleUploadedFile("CT slice 1.dcm", ct_bytes(study_uid=study, series_uid=generate_uid())),
             SimpleUploadedFile("IM0001", ct_bytes(study_uid=study, series_uid=generate_uid())),
             SimpleUploadedFile("IM0001", ct_bytes(study_uid=study, series_uid=generate_uid())),
             SimpleUploadedFile("lossy-12bit.dcm", (DICOM_DIR / "JPEG51__JPEG-lossy.dcm").read_bytes())]
    response = admin_client.post(f"/admin/imaging/datastore/{datastore.id}/import-folder/",
                                 {"kind": "upload", "files": files})
    assert response.status_code == 302
    job = ImportJob.objects.get(datastore=datastore)
    names = sorted(line["inputFile"].rsplit("/", 1)[1] for line in job.outcome["lines"])
    assert names == ["CT slice 1.dcm", "IM0001", "IM0001", "lossy-12bit.dcm"]
    assert manifest_summary(job)["jobSummary"]["numberOfImportedFiles"] == 3
    page = admin_client.get(f"/admin/imaging/importjob/{job.id}/change/").content.decode()
    assert "lossy-12bit.dcm" in page
    reason = page.split("lossy-12bit.dcm</td><td>ValidationException</td><td>")[1].split("</td>")[0]
    assert reason.startswith("The pixel data cannot be decoded") and reason.endswith("12-bit precision"), reason


def test_upload_names_are_one_safe_path_component():
    from imaging.services.imports import upload_file_name

    assert upload_file_name("../../etc/passwd") == "passwd"
    assert upload_file_name("C:\\scans\\IM0001") == "IM0001"
    assert upload_file_name("..") == upload_file_name("") == "upload"
    assert upload_file_name("a\x00b\n.dcm") == "ab.dcm"
    assert len(upload_file_name("é" * 300).encode()) <= 200


def test_long_reasons_are_cut_between_words():
    from imaging.dicom.reader import REASON_LIMIT, short_reason

    words = " ".join(f"word{n}" for n in range(400))
    reason = short_reason(ValueError(words))
    assert len(reason) <= REASON_LIMIT + 2 and reason.endswith(" …")
    assert reason[:-2].split(" ")[-1] in words.split(" ")
    assert short_reason(ValueError("two\n   lines")) == "two lines"


def test_image_set_page_shows_its_versions_and_metadata_document(admin_client, viewer_data):
    image_set = viewer_data.ct_image_set
    page = admin_client.get(f"/admin/imaging/imageset/{image_set.id}/change/").content.decode()
    versions = page.split("<th>Created</th></tr>")[1].split("</table>")[0]
    assert versions.startswith("<tr><td>1</td><td>ACTIVE</td>") and versions.count("<tr>") == 1
    document = page.split("Metadata document (current version)")[1].split("</pre>")[0]
    assert viewer_data.study_uid in document and "DOE^JANE^MARIE" in document
    # Looking at the page is no read of the content: the tier and the last access stay as they were.
    assert image_set.__class__.objects.get(pk=image_set.pk).last_accessed_at == image_set.last_accessed_at


def test_change_forms_write_through_the_services(admin_client, viewer_data):
    datastore = viewer_data.datastore
    renamed = admin_client.post(f"/admin/imaging/datastore/{datastore.id}/change/", {"name": "ward-8"})
    assert renamed.status_code == 302
    assert Datastore.objects.get(pk=datastore.id).name == "ward-8"
    from imaging.services.accesskeys import accesskey_create

    issued = accesskey_create(user=personas.user("api-user"), name="pacs")
    key = AccessKey.objects.get(pk=issued.access_key_id)
    url = f"/admin/imaging/accesskey/{key.access_key_id}/change/"
    assert admin_client.post(url, {"name": "pacs-2"}).status_code == 302  # is_active left unticked: deactivated
    key.refresh_from_db()
    assert (key.name, key.is_active) == ("pacs-2", False)
    assert admin_client.post(url, {"name": "pacs-2", "is_active": "on"}).status_code == 302
    key.refresh_from_db()
    assert key.is_active is True


def test_folder_import_is_refused_outside_the_import_roots_by_the_service(datastore, tmp_path, store_settings):
    from imaging.errors import ValidationFailed
    from imaging.services.imports import import_job_start_local

    (tmp_path / "allowed" / "inner").mkdir(parents=True)
    (tmp_path / "allowed" / "file.dcm").write_bytes(b"")
    store_settings.APERTURE_IMPORT_ROOTS = [str(tmp_path / "allowed")]
    for path, reason in ((tmp_path, "not under"), (tmp_path / "allowed" / ".." / "x", "not under"),
                         (tmp_path / "allowed" / "missing", "does not exist"),
                         (tmp_path / "allowed" / "file.dcm", "does not exist")):
        with pytest.raises(ValidationFailed, match=reason):
            import_job_start_local(datastore_id=datastore.id, paths=[str(path)], import_roots_only=True)
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(tmp_path / "allowed" / "inner")],
                                 import_roots_only=True)
    assert job.input_paths == [str((tmp_path / "allowed" / "inner").resolve())]
