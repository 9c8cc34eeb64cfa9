"""Storage tiers with a controlled clock: the sweep archives untouched sets, touches bring them back."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from pydicom.uid import generate_uid

from imaging.models import Datastore, ImageSet, ImageSetVersion
from imaging.services.datastores import datastore_create
from imaging.services.imageset_writes import imagesets_archive_sweep
from imaging.services.imagesets import imageset_metadata_blob
from imaging.services.imports import import_job_start_local
from tests.dicomgen import ct_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def image_set(settings, tmp_path) -> ImageSet:
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path / 'blobs'}"
    settings.DATA_DIR = tmp_path
    settings.APERTURE_IMPORT_CONCURRENCY = 0
    datastore = Datastore.objects.get(pk=datastore_create(client_token="tiers", name="tiers")["datastoreId"])
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dcm").write_bytes(ct_bytes(study_uid=generate_uid(), series_uid=generate_uid()))
    import_job_start_local(datastore_id=datastore.id, paths=[str(tmp_path / "in")])
    return ImageSet.objects.get(datastore=datastore)


def test_sweep_archives_after_the_configured_days_and_a_touch_restores(settings, image_set):
    settings.APERTURE_TIERING_DAYS = 30
    assert image_set.storage_tier == "FREQUENT_ACCESS" and image_set.last_accessed_at is not None
    now = timezone.now()
    assert imagesets_archive_sweep(now_iso=(now + timedelta(days=29)).isoformat()) == 0
    assert imagesets_archive_sweep(now_iso=(now + timedelta(days=31)).isoformat()) == 1
    image_set.refresh_from_db()
    assert image_set.storage_tier == "ARCHIVE_INSTANT_ACCESS"
    # Reads are served the same from either tier, and a metadata read is a touch.
    assert imageset_metadata_blob(datastore_id=image_set.datastore_id, image_set_id=image_set.id, version=None)
    image_set.refresh_from_db()
    assert image_set.storage_tier == "FREQUENT_ACCESS"


def test_sweep_days_are_configurable(settings, image_set):
    settings.APERTURE_TIERING_DAYS = 2
    assert imagesets_archive_sweep(now_iso=(timezone.now() + timedelta(days=3)).isoformat()) == 1
    assert ImageSetVersion.objects.filter(image_set=image_set).count() == 1


def test_concurrent_write_quotas(settings, image_set):
    from imaging.errors import QuotaExceeded, Throttled
    from imaging.models import ImageSetState
    from imaging.services.imageset_writes import imageset_copy, imageset_delete, imageset_update

    settings.APERTURE_MAX_CONCURRENT_WRITES = 1
    other = ImageSet.objects.create(datastore=image_set.datastore, state=ImageSetState.LOCKED,
                                    workflow_status="UPDATING", study_instance_uid="1.2", series_instance_uid="1.2.3")
    update = {"DICOMUpdates": {"updatableAttributes": b'{"Study": {"DICOM": {"StudyDescription": "x"}}}'}}
    with pytest.raises(QuotaExceeded):
        imageset_update(datastore_id=image_set.datastore_id, image_set_id=image_set.id, latest_version_id="1",
                        updates=update)
    other.workflow_status = "COPYING"
    ImageSet.objects.filter(pk=other.pk).update(workflow_status="COPYING")
    with pytest.raises(QuotaExceeded):
        imageset_copy(datastore_id=image_set.datastore_id, source_image_set_id=image_set.id,
                      copy_information={"sourceImageSet": {"latestVersionId": "1"}})
    ImageSet.objects.filter(pk=other.pk).update(workflow_status="DELETING")
    with pytest.raises(Throttled):
        imageset_delete(datastore_id=image_set.datastore_id, image_set_id=image_set.id)
