"""Writes to image sets (SPEC 8): UpdateImageSetMetadata, CopyImageSet, DeleteImageSet, and the tiering sweep.

Each write runs its checks and prepares the new version in one transaction with the image set row locked
(select_for_update, then compare-and-set on `latest_version`), so of many concurrent writes carrying the same
`latestVersionId` exactly one wins and the others see LOCKED or a stale version: ConflictException. The accepted
write leaves the set LOCKED with version n+1 reserved and its metadata already stored; a background task then
publishes it (content_version = n+1, ACTIVE, index columns). Reads keep serving version n until then, so nobody
sees a half-applied version.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from imaging.dicom.document import decode_document, encode_document, frame_ids, summary
from imaging.dicom.levels import SERIES_KEYS, grouping_of
from imaging.dicom.updates import (
    UpdateRejected,
    apply_level_changes,
    apply_updates,
    grouping_changes,
    level_changes,
    parse_blob,
)
from imaging.errors import Conflict, NotFound, QuotaExceeded, Throttled, ValidationFailed
from imaging.models import (
    ImageFrame,
    ImageSet,
    ImageSetState,
    ImageSetVersion,
    ResourceTag,
    StorageTier,
    WorkflowStatus,
)
from imaging.services.datastores import datastore_require_active
from imaging.study_index import study_index_refresh
from imaging.storage import blob_store
from imaging.storage.keys import metadata_blob_key
from imaging.tasks import enqueue, periodic, task

logger = logging.getLogger(__name__)

MAX_UPDATE_BYTES = 10 * 1024
MAX_COPY_FRAMES = 1000


WRITE_WORKFLOWS = {
    "update": (WorkflowStatus.UPDATING, WorkflowStatus.UPDATING_FOR_STUDY_CONSISTENCY),
    "copy": (WorkflowStatus.COPYING,),
    "delete": (WorkflowStatus.DELETING,),
}


def _check_concurrency(datastore_id: str, kind: str) -> None:
    """At most APERTURE_MAX_CONCURRENT_WRITES writes of one kind in flight per data store (SPEC 3.5): 402 for
    update and copy, 429 for delete (whose model declares no quota error)."""
    running = ImageSet.objects.filter(datastore_id=datastore_id, state=ImageSetState.LOCKED,
                                      workflow_status__in=WRITE_WORKFLOWS[kind]).count()
    if running >= settings.APERTURE_MAX_CONCURRENT_WRITES:
        message = f"Too many concurrent {kind} operations in this data store"
        raise Throttled(message) if kind == "delete" else QuotaExceeded(message)


def _locked_image_set(datastore_id: str, image_set_id: str, latest_version_id: str | None) -> ImageSet:
    image_set = ImageSet.objects.select_for_update().filter(pk=image_set_id, datastore_id=datastore_id).first()
    if image_set is None or image_set.state == ImageSetState.DELETED:
        raise NotFound(f"Image set {image_set_id} does not exist")
    if image_set.state == ImageSetState.LOCKED:
        raise Conflict(f"Image set {image_set_id} is locked by another operation")
    if latest_version_id is not None and latest_version_id != str(image_set.latest_version):
        raise Conflict(f"latestVersionId {latest_version_id} is not the latest version of image set {image_set_id}")
    return image_set


def _document(image_set: ImageSet, version: int | None = None) -> dict[str, Any]:
    row = image_set.versions.get(version=version or image_set.content_version)
    return decode_document(blob_store().get(row.metadata_key) or b"")


def _reserve(image_set: ImageSet, document: dict[str, Any], *, workflow: str, forced: bool = False,
             is_primary: bool | None = None) -> ImageSetVersion:
    """Store the new version's metadata and lock the set on it (inside the caller's transaction)."""
    version = image_set.latest_version + 1
    document = {**document, "ImageSetID": image_set.id, "DatastoreID": image_set.datastore_id}
    key = metadata_blob_key(image_set.datastore_id, image_set.id, version)
    blob_store().put(key, encode_document(document))
    if is_primary is not None:
        image_set.is_primary = is_primary
    row = ImageSetVersion.objects.create(image_set=image_set, version=version, state=ImageSetState.LOCKED,
                                         workflow_status=workflow, forced=forced, is_primary=image_set.is_primary,
                                         metadata_key=key)
    image_set.latest_version = version
    image_set.state = ImageSetState.LOCKED
    image_set.workflow_status = workflow
    image_set.forced = forced
    image_set.save()
    return row


@task
def imageset_publish(*, image_set_ids: list[str], workflow: str) -> None:
    """Make reserved versions current: ACTIVE, index columns from the new document, touched."""
    for image_set_id in image_set_ids:
        with transaction.atomic():
            image_set = ImageSet.objects.select_for_update().filter(pk=image_set_id).first()
            if image_set is None or image_set.state != ImageSetState.LOCKED:
                continue
            if image_set.latest_version > image_set.content_version:
                document = _document(image_set, image_set.latest_version)
                for name, value in summary(document).items():
                    setattr(image_set, name, value)
                image_set.grouping_keys = _grouping(document)
                image_set.content_version = image_set.latest_version
                image_set.versions.filter(version=image_set.latest_version).update(
                    state=ImageSetState.ACTIVE, workflow_status=workflow)
                image_set.workflow_status = workflow
            else:  # a copy source: nothing changed, it only returns to ACTIVE
                image_set.workflow_status = image_set.versions.get(version=image_set.latest_version).workflow_status
            image_set.state = ImageSetState.ACTIVE
            image_set.last_accessed_at = timezone.now()
            image_set.storage_tier = StorageTier.FREQUENT_ACCESS
            image_set.save()
            study_index_refresh(datastore_id=image_set.datastore_id, study_uids=[image_set.study_instance_uid])


def _grouping(document: dict[str, Any]) -> list[str]:
    merged = {**document["Patient"].get("DICOM", {}), **document["Study"].get("DICOM", {})}
    series = next(iter(document["Study"].get("Series", {}).values()), {"DICOM": {}})
    merged.update({key: series.get("DICOM", {}).get(key) for key in SERIES_KEYS})
    return list(grouping_of(merged))


def _response(image_set: ImageSet) -> dict[str, Any]:
    return {"datastoreId": image_set.datastore_id, "imageSetId": image_set.id,
            "latestVersionId": str(image_set.latest_version), "imageSetState": image_set.state,
            "imageSetWorkflowStatus": image_set.workflow_status, "createdAt": image_set.created_at,
            "updatedAt": image_set.updated_at}


def imageset_update(*, datastore_id: str, image_set_id: str, latest_version_id: str, updates: dict[str, Any],
                    force: bool = False, include_study_image_sets: bool = False) -> dict[str, Any]:
    datastore_require_active(datastore_id=datastore_id)
    dicom_updates = updates.get("DICOMUpdates")
    if dicom_updates is not None:
        payloads = [dicom_updates.get("updatableAttributes"), dicom_updates.get("removableAttributes")]
        if not any(payload is not None for payload in payloads):
            raise ValidationFailed("DICOMUpdates needs updatableAttributes or removableAttributes")
        if sum(len(payload) for payload in payloads if payload) > MAX_UPDATE_BYTES:
            raise QuotaExceeded(f"The update payload is larger than {MAX_UPDATE_BYTES} bytes")
        try:
            updatable = parse_blob(payloads[0], "updatableAttributes")
            removable = parse_blob(payloads[1], "removableAttributes")
        except UpdateRejected as e:
            raise ValidationFailed(str(e)) from e
    with transaction.atomic():
        _check_concurrency(datastore_id, "update")
        image_set = _locked_image_set(datastore_id, image_set_id, latest_version_id)
        current = _document(image_set)
        if dicom_updates is None:
            revert_to = int(updates["revertToVersionId"])
            if revert_to == image_set.latest_version or not image_set.versions.filter(version=revert_to).exists():
                raise ValidationFailed(f"revertToVersionId {revert_to} is not an earlier version of this image set")
            new_document = _document(image_set, revert_to)
        else:
            try:
                new_document = apply_updates(current, updatable=updatable, removable=removable, force=force,
                                             is_primary=image_set.is_primary)
            except UpdateRejected as e:
                raise ValidationFailed(str(e)) from e
        others: list[ImageSet] = []
        changed_keys = grouping_changes(current, new_document)
        if changed_keys or include_study_image_sets:
            others = list(
                ImageSet.objects.select_for_update()
                .filter(datastore_id=datastore_id, study_instance_uid=image_set.study_instance_uid)
                .exclude(pk=image_set.pk).exclude(state=ImageSetState.DELETED)
            )
            siblings = [other for other in others if other.is_primary]
            if changed_keys and image_set.is_primary and siblings and not include_study_image_sets:
                raise Conflict(f"The update changes {', '.join(sorted(changed_keys))}, which other primary image "
                               "sets of this study share; use includeStudyImageSets=true")
            if not include_study_image_sets:
                others = []
            if any(other.state == ImageSetState.LOCKED for other in others):
                raise Conflict("Another image set of this study is locked; nothing was changed")
        _reserve(image_set, new_document, workflow=WorkflowStatus.UPDATING, forced=force)
        changes = level_changes(current, new_document)
        for other in others:
            _reserve(other, apply_level_changes(_document(other), changes),
                     workflow=WorkflowStatus.UPDATING_FOR_STUDY_CONSISTENCY)
        enqueue(imageset_publish, image_set_ids=[image_set.id, *[o.id for o in others]],
                workflow=WorkflowStatus.UPDATED)
        return _response(image_set)


def _selection(document: dict[str, Any], copiable: str | None) -> dict[str, Any]:
    """The document restricted to the instances `copiableAttributes` names (all of it without one)."""
    if copiable is None:
        return document
    try:
        wanted = json.loads(copiable)
    except json.JSONDecodeError as e:
        raise ValidationFailed("copiableAttributes must be JSON") from e
    if not isinstance(wanted, dict) or wanted.get("SchemaVersion") not in ("1.1", 1.1):
        raise ValidationFailed("copiableAttributes needs SchemaVersion 1.1")
    series_wanted = (wanted.get("Study") or {}).get("Series")
    if not isinstance(series_wanted, dict) or not series_wanted:
        raise ValidationFailed("copiableAttributes must name at least one series")
    result = {**document, "Study": {**document["Study"], "Series": {}}}
    for series_uid, series in series_wanted.items():
        source_series = document["Study"]["Series"].get(series_uid)
        if source_series is None:
            raise ValidationFailed(f"Series {series_uid} is not in the source image set")
        instances = (series or {}).get("Instances")
        chosen = dict(source_series["Instances"]) if not instances else {}
        for sop_uid in instances or {}:
            if sop_uid not in source_series["Instances"]:
                raise ValidationFailed(f"Instance {sop_uid} is not in the source image set")
            chosen[sop_uid] = source_series["Instances"][sop_uid]
        result["Study"]["Series"][series_uid] = {**source_series, "Instances": chosen}
    return result


def _merge_copy(destination_doc: dict[str, Any], selected: dict[str, Any], *, force: bool) -> dict[str, Any]:
    existing = {sop for series in destination_doc["Study"]["Series"].values() for sop in series["Instances"]}
    incoming = {sop for series in selected["Study"]["Series"].values() for sop in series["Instances"]}
    if existing & incoming:
        raise Conflict("The destination already holds some of these SOP instances")
    if not force and _grouping(destination_doc)[:10] != _grouping(selected)[:10]:
        raise Conflict("Patient/Study/Series metadata of source and destination differ; use force=true")
    result = json.loads(json.dumps(destination_doc))
    for series_uid, series in selected["Study"]["Series"].items():
        target = result["Study"]["Series"].setdefault(series_uid, {"DICOM": series.get("DICOM", {}), "Instances": {}})
        target["Instances"].update(series["Instances"])
    return result


def imageset_copy(*, datastore_id: str, source_image_set_id: str, copy_information: dict[str, Any],
                  force: bool = False, promote_to_primary: bool = False) -> dict[str, Any]:
    datastore_require_active(datastore_id=datastore_id)
    source_info = copy_information["sourceImageSet"]
    destination_info = copy_information.get("destinationImageSet")
    with transaction.atomic():
        _check_concurrency(datastore_id, "copy")
        source = _locked_image_set(datastore_id, source_image_set_id, source_info["latestVersionId"])
        selected = _selection(_document(source), (source_info.get("DICOMCopies") or {}).get("copiableAttributes"))
        copied_frames = frame_ids(selected)
        if len(copied_frames) > MAX_COPY_FRAMES:
            raise QuotaExceeded(f"A copy may carry at most {MAX_COPY_FRAMES} image frames")
        destination = None
        if destination_info:
            if destination_info["imageSetId"] == source.id:
                raise ValidationFailed("The destination must differ from the source")
            destination = _locked_image_set(datastore_id, destination_info["imageSetId"],
                                            destination_info["latestVersionId"])
        elif promote_to_primary:
            destination = (ImageSet.objects.select_for_update()
                           .filter(datastore_id=datastore_id, study_instance_uid=source.study_instance_uid,
                                   series_instance_uid=source.series_instance_uid, is_primary=True)
                           .exclude(state=ImageSetState.DELETED).exclude(pk=source.pk).first())
            if destination is not None and destination.state == ImageSetState.LOCKED:
                raise Conflict("The primary image set of this series is locked")
        if destination is not None:
            document = _merge_copy(_document(destination), selected, force=force)
            _reserve(destination, document, workflow=WorkflowStatus.COPYING, forced=force)
        else:
            destination = ImageSet(datastore_id=datastore_id, is_primary=promote_to_primary,
                                   study_instance_uid=source.study_instance_uid,
                                   series_instance_uid=source.series_instance_uid, latest_version=0,
                                   content_version=0, grouping_keys=_grouping(selected))
            destination.save()
            _reserve(destination, selected, workflow=WorkflowStatus.COPYING)
        source_frames = {frame.frame_id: frame for frame in ImageFrame.objects.filter(image_set=source,
                                                                                      frame_id__in=copied_frames)}
        ImageFrame.objects.bulk_create(
            [ImageFrame(image_set=destination, frame_id=f.frame_id, blob_key=f.blob_key,
                        stored_transfer_syntax=f.stored_transfer_syntax, size=f.size) for f in source_frames.values()],
            ignore_conflicts=True,
        )
        source.state, source.workflow_status = ImageSetState.LOCKED, WorkflowStatus.COPYING_WITH_READ_ONLY_ACCESS
        source.save()
        source_answer = _copy_properties(source)
        destination_answer = _copy_properties(destination)
        enqueue(imageset_publish, image_set_ids=[destination.id, source.id], workflow=WorkflowStatus.COPIED)
    return {"datastoreId": datastore_id, "sourceImageSetProperties": source_answer,
            "destinationImageSetProperties": destination_answer}


def _copy_properties(image_set: ImageSet) -> dict[str, Any]:
    return {"imageSetId": image_set.id, "latestVersionId": str(image_set.latest_version),
            "imageSetState": image_set.state, "imageSetWorkflowStatus": image_set.workflow_status,
            "createdAt": image_set.created_at, "updatedAt": image_set.updated_at, "imageSetArn": image_set.arn}


def imageset_delete(*, datastore_id: str, image_set_id: str) -> dict[str, Any]:
    with transaction.atomic():
        image_set = ImageSet.objects.select_for_update().filter(pk=image_set_id, datastore_id=datastore_id).first()
        if image_set is None:
            raise NotFound(f"Image set {image_set_id} does not exist")
        already = image_set.state == ImageSetState.DELETED or image_set.workflow_status == WorkflowStatus.DELETING
        if not already:
            _check_concurrency(datastore_id, "delete")
            if image_set.state == ImageSetState.LOCKED:
                raise Conflict(f"Image set {image_set_id} is locked by another operation")
            image_set.state, image_set.workflow_status = ImageSetState.LOCKED, WorkflowStatus.DELETING
            image_set.save()
            enqueue(imageset_purge, image_set_id=image_set.id)
        return {"datastoreId": datastore_id, "imageSetId": image_set.id, "imageSetState": image_set.state,
                "imageSetWorkflowStatus": image_set.workflow_status}


@task
def imageset_purge(*, image_set_id: str) -> None:
    """DELETED, then the blobs nothing else refers to (copies share frame blobs)."""
    store = blob_store()
    with transaction.atomic():
        image_set = ImageSet.objects.select_for_update().filter(pk=image_set_id).first()
        if image_set is None or image_set.workflow_status != WorkflowStatus.DELETING:
            return
        now = timezone.now()
        frame_keys = set(image_set.frames.values_list("blob_key", flat=True))
        metadata_keys = list(image_set.versions.values_list("metadata_key", flat=True))
        image_set.frames.all().delete()
        image_set.versions.update(deleted_at=now, state=ImageSetState.DELETED)
        image_set.versions.filter(version=image_set.latest_version).update(workflow_status=WorkflowStatus.DELETED)
        image_set.state, image_set.workflow_status, image_set.deleted_at = (
            ImageSetState.DELETED, WorkflowStatus.DELETED, now)
        image_set.save()
        ResourceTag.objects.filter(resource_arn=image_set.arn).delete()
        study_index_refresh(datastore_id=image_set.datastore_id, study_uids=[image_set.study_instance_uid])
        still_used = set(ImageFrame.objects.filter(blob_key__in=frame_keys).values_list("blob_key", flat=True))
    for key in (frame_keys - still_used) | set(metadata_keys):
        store.delete(key)


@periodic(every="APERTURE_TIERING_SWEEP_SECONDS")
@task
def imagesets_archive_sweep(*, now_iso: str | None = None) -> int:
    """Move image sets untouched for APERTURE_TIERING_DAYS to ARCHIVE_INSTANT_ACCESS (SPEC 9)."""
    now = datetime.fromisoformat(now_iso) if now_iso else timezone.now()
    horizon = now - timedelta(days=settings.APERTURE_TIERING_DAYS)
    moved = (ImageSet.objects.filter(storage_tier=StorageTier.FREQUENT_ACCESS, last_accessed_at__lt=horizon)
             .exclude(state=ImageSetState.DELETED).update(storage_tier=StorageTier.ARCHIVE_INSTANT_ACCESS))
    if moved:
        logger.info("moved %d image set(s) to ARCHIVE_INSTANT_ACCESS", moved)
    return moved
