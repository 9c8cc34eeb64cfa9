"""Read side of image sets: GetImageSet, GetImageSetMetadata, GetImageFrame (SPEC 5.4, 6.2, 8.5)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from imaging.codecs import registry
from imaging.dicom.document import decode_document
from imaging.errors import NotAcceptable, NotFound
from imaging.models import Datastore, DatastoreStatus, ImageFrame, ImageSet, ImageSetState, ImageSetVersion, StorageTier
from imaging.services.audit import audit_subject_note
from imaging.services.datastores import datastore_get_live
from imaging.storage import BlobStoreError, blob_store


def imageset_get(*, datastore_id: str, image_set_id: str, include_deleted: bool = True) -> ImageSet:
    datastore = datastore_get_live(datastore_id=datastore_id)
    image_set = ImageSet.objects.filter(pk=image_set_id, datastore=datastore).first()
    if image_set is None or (not include_deleted and image_set.state == ImageSetState.DELETED):
        raise NotFound(f"Image set {image_set_id} does not exist")
    return image_set


def imageset_version(*, image_set: ImageSet, version: str | None) -> ImageSetVersion:
    number = int(version) if version is not None else image_set.latest_version
    found = image_set.versions.filter(version=number).first()
    if found is None:
        raise NotFound(f"Version {number} of image set {image_set.id} does not exist")
    return found


# Tiering works in days: a touch within this long of the last one changes nothing worth a write. Without it every
# GetImageFrame (up to 1000/s) would be a database write, which SQLite serializes.
TOUCH_RESOLUTION = timedelta(minutes=1)


def imageset_touch(*, image_set: ImageSet) -> None:
    """A read of the content: record it and bring the image set back to the frequent-access tier (SPEC 9)."""
    _touch(image_set.pk, last_accessed_at=image_set.last_accessed_at, storage_tier=image_set.storage_tier)


def _touch(image_set_id: str, *, last_accessed_at, storage_tier: str) -> None:
    now = timezone.now()
    recent = last_accessed_at is not None and now - last_accessed_at < TOUCH_RESOLUTION
    if recent and storage_tier == StorageTier.FREQUENT_ACCESS:
        return
    ImageSet.objects.filter(pk=image_set_id).update(last_accessed_at=now, storage_tier=StorageTier.FREQUENT_ACCESS)


def imageset_metadata_blob(*, datastore_id: str, image_set_id: str, version: str | None) -> bytes:
    image_set = imageset_get(datastore_id=datastore_id, image_set_id=image_set_id, include_deleted=False)
    # Without a version, the newest *completed* version: a write in progress is not visible yet.
    found = imageset_version(image_set=image_set, version=version or str(image_set.content_version))
    if found.version > image_set.content_version:
        raise NotFound(f"Version {found.version} of image set {image_set_id} is not complete")
    blob = blob_store().get(found.metadata_key)
    if blob is None:
        raise BlobStoreError(f"metadata blob of version {found.version} is missing")
    imageset_touch(image_set=image_set)
    return blob


def imageset_metadata_document(*, image_set: ImageSet) -> dict[str, Any] | None:
    """The metadata document of the newest completed version, decoded, for pages that show it (the admin): deleted
    image sets included, no access recorded (the tier stays as it is), None when it is not there."""
    found = image_set.versions.filter(version=image_set.content_version).first()
    blob = blob_store().get(found.metadata_key) if found else None
    return decode_document(blob) if blob else None


def _accepts(accept: str | None, content_type: str) -> bool:
    if not accept:
        return True
    kind = content_type.split("/")[0]
    synonyms = {"image/jph", "image/jphc"} if content_type in ("image/jph", "image/jphc") else {content_type}
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in ("*/*", f"{kind}/*") or media in synonyms:
            return True
    return False


def _frame_row(*, datastore_id: str, image_set_id: str, frame_id: str) -> tuple | None:
    """(blob key, stored transfer syntax, the image set's last access, tier, patient id, study UID) of a frame,
    when the data store is live, the image set not deleted and the frame there; None otherwise (the caller then finds
    out which, for the error). Plain SQL: the same query through the ORM (two joined excludes) took 2 ms to build,
    fifty times what SQLite takes to answer it, on every GetImageFrame."""
    frame, image_set, datastore = ImageFrame._meta.db_table, ImageSet._meta.db_table, Datastore._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT f.blob_key, f.stored_transfer_syntax, s.last_accessed_at, s.storage_tier, s.patient_id, "
            f"s.study_instance_uid FROM {frame} f JOIN {image_set} s ON s.id = f.image_set_id "
            f"JOIN {datastore} d ON d.id = s.datastore_id "
            f"WHERE f.image_set_id = %s AND f.frame_id = %s AND s.datastore_id = %s AND s.state <> %s AND d.status <> %s",
            [image_set_id, frame_id, datastore_id, ImageSetState.DELETED, DatastoreStatus.DELETED])
        row = cursor.fetchone()
    if row is None:
        return None
    last_accessed_at = ImageSet._meta.get_field("last_accessed_at")
    # The backend's converters, as the ORM applies them (SQLite hands back text, and naive datetimes without USE_TZ)
    converters = connection.ops.get_db_converters(last_accessed_at.get_col(image_set))
    accessed = row[2]
    for converter in converters:
        accessed = converter(accessed, last_accessed_at.get_col(image_set), connection)
    return (row[0], row[1], accessed, *row[3:])


def imageset_frame(*, datastore_id: str, image_set_id: str, frame_id: str, accept: str | None) -> tuple[bytes, str]:
    """A frame's bytes as stored and their media type. GetImageFrame is the hottest call there is: the usual case
    is one query (the data store, image set and frame rows joined), and the audit trail is handed the image set's
    patient and study so that it need not read them again."""
    row = _frame_row(datastore_id=datastore_id, image_set_id=image_set_id, frame_id=frame_id)
    if row is None:
        image_set = imageset_get(datastore_id=datastore_id, image_set_id=image_set_id, include_deleted=False)
        frame = ImageFrame.objects.filter(image_set=image_set, frame_id=frame_id).first()
        if frame is None:
            raise NotFound(f"Image frame {frame_id} does not exist in image set {image_set_id}")
        row = (frame.blob_key, frame.stored_transfer_syntax, image_set.last_accessed_at, image_set.storage_tier,
               image_set.patient_id, image_set.study_instance_uid)
    blob_key, transfer_syntax, last_accessed_at, storage_tier, patient_id, study_uid = row
    audit_subject_note(datastore_id=datastore_id, image_set_id=image_set_id, patient_id=patient_id,
                       study_uid=study_uid)
    content_type = registry.frame_media_type(transfer_syntax)
    if not _accepts(accept, content_type):
        raise NotAcceptable(f"The frame is stored as {content_type}, which the Accept header excludes")
    data = blob_store().get(blob_key)
    if data is None:
        raise BlobStoreError("frame blob is missing")
    _touch(image_set_id, last_accessed_at=last_accessed_at, storage_tier=storage_tier)
    return data, content_type
