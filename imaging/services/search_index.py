"""Rebuilding the search columns of image sets from their metadata documents.

Every import, update, copy and delete keeps the columns (and the study index) in step as it writes. A column added
later (the QIDO-RS attributes of migration 0013) is empty on image sets written before it existed: this refills
the columns from each image set's current document and refreshes the study index, one image set per transaction,
so it can run beside live traffic and be run again after an interruption.
"""
from __future__ import annotations

from django.db import transaction

from imaging.dicom.document import decode_document, summary
from imaging.models import ImageSet, ImageSetState, StudyIndex
from imaging.storage import blob_store
from imaging.study_index import study_index_refresh


def search_index_rebuild(*, datastore_id: str | None = None, only_missing: bool = True) -> int:
    """Refill the search columns of the ACTIVE image sets (of one data store, or all); with `only_missing`, only
    of those whose QIDO-RS attributes were never filled. Returns how many image sets were refilled."""
    queryset = ImageSet.objects.filter(state=ImageSetState.ACTIVE)
    if datastore_id:
        queryset = queryset.filter(datastore_id=datastore_id)
    if only_missing:
        queryset = queryset.filter(qido_attributes={})
    store, refilled = blob_store(), 0
    for image_set_id in queryset.values_list("id", flat=True).iterator(chunk_size=500):
        with transaction.atomic():
            image_set = ImageSet.objects.select_for_update().filter(pk=image_set_id,
                                                                    state=ImageSetState.ACTIVE).first()
            if image_set is None:
                continue  # deleted or being written since it was listed: its writer refreshes the columns
            version = image_set.versions.filter(version=image_set.content_version).first()
            blob = store.get(version.metadata_key) if version else None
            if not blob:
                continue
            columns = summary(decode_document(blob))
            for name, value in columns.items():
                setattr(image_set, name, value)
            image_set.save(update_fields=list(columns))  # not updated_at: a rebuild is not an update
            _study_refresh_keeping_order(image_set)
            refilled += 1
    return refilled


def _study_refresh_keeping_order(image_set: ImageSet) -> None:
    """Refresh the study's index row without moving it: QIDO-RS lists studies by last update."""
    rows = StudyIndex.objects.filter(datastore_id=image_set.datastore_id,
                                     study_instance_uid=image_set.study_instance_uid)
    updated_at = rows.values_list("updated_at", flat=True).first()
    study_index_refresh(datastore_id=image_set.datastore_id, study_uids=[image_set.study_instance_uid])
    if updated_at is not None:
        rows.update(updated_at=updated_at)
