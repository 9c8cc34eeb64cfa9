"""Grouping imported instances into image sets and writing them (SPEC 4.4), all in one transaction per job.

Everything a job adds becomes visible at once or not at all: a job cut off by a crash leaves no half-visible
image set and can simply run again. Primary image sets are locked (select_for_update) while a merge reads and
replaces their metadata, and the database's unique constraint keeps one primary per series even when two jobs
race to create it.

Persisting knows the models, the study index and the blob store, never the services; what it wrote it returns,
and what a failed attempt wrote it removes itself.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from django.db import IntegrityError, transaction
from django.utils import timezone

from imaging.dicom.document import (
    InstancePart,
    add_instances,
    decode_document,
    encode_document,
    new_document,
    summary,
)
from imaging.dicom.levels import PATIENT_KEYS, STUDY_KEYS
from imaging.models import (
    Datastore,
    ImageFrame,
    ImageSet,
    ImageSetState,
    ImageSetVersion,
    WorkflowStatus,
)
from imaging.pipeline.results import FileResult
from imaging.storage import BlobStore, discard_blobs
from imaging.storage.keys import frame_blob_key, metadata_blob_key
from imaging.study_index import study_index_refresh

STUDY_LEVEL_KEYS = len(PATIENT_KEYS) + len(STUDY_KEYS)
MERGE_WAIT_SECONDS = 15 * 60  # SPEC 4.4 rule 7


class ImageSetBusy(Exception):
    """The primary image set to merge into is LOCKED by an update or copy; the merge waits and tries again."""

    def __init__(self, image_set_id: str, group: tuple) -> None:
        super().__init__(image_set_id)
        self.group = group


@dataclass(frozen=True)
class StoredFrame:
    """One frame of an instance, already in the blob store."""

    frame_id: str
    blob_key: str
    stored_transfer_syntax: str
    size: int


@dataclass
class StoredInstance:
    """What persisting needs of a processed file once its frames are in the blob store."""

    input_file: str
    study_uid: str
    series_uid: str
    grouping: tuple[str, ...]
    part: InstancePart
    frames: list[StoredFrame]
    warnings: list[dict[str, Any]] = field(default_factory=list)
    image_set_id: str = ""
    version: int = 0
    is_primary: bool = False
    conflict: str = ""  # why the instance could not be merged (SPEC 4.4 rule 7); it is then not stored


def stored_instance(result: FileResult, datastore_id: str) -> StoredInstance:
    stored_syntax = result.instance.get("StoredTransferSyntaxUID") or ""
    return StoredInstance(
        input_file=result.input_file,
        study_uid=result.study_uid,
        series_uid=result.series_uid,
        grouping=tuple(result.grouping),
        part=InstancePart(
            series_uid=result.series_uid,
            sop_uid=result.sop_uid,
            instance_number=result.instance_number,
            levels=result.levels,
            level_vrs=result.level_vrs,
            instance=result.instance,
        ),
        frames=[StoredFrame(frame_id=frame.frame_id, blob_key=frame_blob_key(datastore_id, frame.frame_id),
                            stored_transfer_syntax=stored_syntax, size=frame.size or len(frame.frame_bytes))
                for frame in result.frames],
        warnings=result.warnings,
    )


def _write_version(
    *, blob_store: BlobStore, image_set: ImageSet, document: dict[str, Any], version: int, workflow: str,
    members: list[StoredInstance],
) -> str:
    """Store the version's metadata document and write its rows; returns the document's blob key (removed again
    when the rows cannot be written)."""
    key = metadata_blob_key(image_set.datastore_id, image_set.id, version)
    blob_store.put(key, encode_document(document))
    try:
        _write_version_rows(image_set=image_set, document=document, version=version, workflow=workflow,
                            members=members, metadata_key=key)
    except BaseException:
        discard_blobs(blob_store, [key])
        raise
    return key


def _write_version_rows(
    *, image_set: ImageSet, document: dict[str, Any], version: int, workflow: str, members: list[StoredInstance],
    metadata_key: str,
) -> None:
    ImageSetVersion.objects.create(
        image_set=image_set, version=version, workflow_status=workflow, is_primary=image_set.is_primary,
        metadata_key=metadata_key,
    )
    ImageFrame.objects.bulk_create(
        [
            ImageFrame(image_set=image_set, frame_id=frame.frame_id, blob_key=frame.blob_key,
                       stored_transfer_syntax=frame.stored_transfer_syntax, size=frame.size)
            for member in members
            for frame in member.frames
        ],
        ignore_conflicts=True,
    )
    columns = summary(document)
    for name, value in columns.items():
        setattr(image_set, name, value)
    image_set.latest_version = image_set.content_version = version
    image_set.workflow_status = workflow
    image_set.state = ImageSetState.ACTIVE
    image_set.last_accessed_at = timezone.now()
    image_set.save()
    for member in members:
        member.image_set_id, member.version, member.is_primary = image_set.id, version, image_set.is_primary


def _study_conflicts(datastore: Datastore, study_uid: str, series_uid: str, grouping: tuple[str, ...]) -> bool:
    others = (
        ImageSet.objects.filter(datastore=datastore, study_instance_uid=study_uid, is_primary=True)
        .exclude(state=ImageSetState.DELETED)
        .exclude(series_instance_uid=series_uid)
        .values_list("grouping_keys", flat=True)
    )
    return any(list(keys)[:STUDY_LEVEL_KEYS] != list(grouping[:STUDY_LEVEL_KEYS]) for keys in others if keys)


def persist_instances(
    *, datastore: Datastore, instances: list[StoredInstance], blob_store: BlobStore,
    after_write: Callable[[list[dict[str, Any]]], None] | None = None,
    merge_wait_seconds: float = MERGE_WAIT_SECONDS, while_waiting: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Group and write; returns the imageSetsSummary. `after_write(summary)` runs inside the transaction.

    A primary image set LOCKED by an update or copy is waited for; after `merge_wait_seconds` the instances that
    would merge into it are given up (their `conflict` says why) and the others are written. `while_waiting()` is
    called once a second meanwhile (the job's heartbeat, so that it is not taken for dead).
    """
    deadline = time.monotonic() + merge_wait_seconds
    attempt = 0
    given_up: set[tuple] = set()
    while True:
        attempt += 1
        # What this attempt stored, once _persist has returned (a _persist that raises removes its own).
        written: list[str] = []
        try:
            with transaction.atomic():
                summaries, written = _persist(datastore=datastore, instances=instances, blob_store=blob_store,
                                              skip=given_up)
                if after_write is not None:
                    after_write(summaries)
                return summaries
        except IntegrityError:
            # Another job created the primary image set of one of these series first: group again against it.
            discard_blobs(blob_store, written)
            if attempt >= 3:
                raise
        except ImageSetBusy as busy:
            discard_blobs(blob_store, written)
            if time.monotonic() > deadline:
                given_up.add(busy.group)
                for item in instances:
                    if _group_of(item) == busy.group:
                        item.conflict = (f"The primary image set {busy} stayed locked by another operation for "
                                         f"{int(merge_wait_seconds)} seconds; the instance was not merged")
            else:
                if while_waiting is not None:
                    while_waiting()
                time.sleep(1)
        except Exception:
            # The transaction rolled back: the documents it stored are named by no row (a crash instead leaves
            # them to the orphan sweep, imaging/services/orphans.py).
            discard_blobs(blob_store, written)
            raise


def _group_of(item: StoredInstance) -> tuple:
    return item.study_uid, item.series_uid, item.grouping


def _persist(
    *, datastore: Datastore, instances: list[StoredInstance], blob_store: BlobStore, skip: set[tuple] = frozenset(),
) -> tuple[list[dict[str, Any]], list[str]]:
    """(the imageSetsSummary, the metadata blob keys stored); on failure it removes what it stored and raises."""
    groups: OrderedDict[tuple[str, str, tuple[str, ...]], list[StoredInstance]] = OrderedDict()
    for item in instances:
        if _group_of(item) not in skip:
            groups.setdefault(_group_of(item), []).append(item)
    summaries: list[dict[str, Any]] = []
    written: list[str] = []
    try:
        for group, members in groups.items():
            summary, key = _persist_group(datastore=datastore, group=group, members=members, blob_store=blob_store)
            summaries.append(summary)
            written.append(key)
        if groups:
            study_index_refresh(datastore_id=datastore.id, study_uids=[key[0] for key in groups])
    except BaseException:
        discard_blobs(blob_store, written)
        raise
    return summaries, written


def _persist_group(
    *, datastore: Datastore, group: tuple[str, str, tuple[str, ...]], members: list[StoredInstance],
    blob_store: BlobStore,
) -> tuple[dict[str, Any], str]:
    """Write one group into its primary image set, or a new one; (its summary, the metadata blob key stored)."""
    study_uid, series_uid, grouping = group
    primary = (
        ImageSet.objects.select_for_update()
        .filter(datastore=datastore, study_instance_uid=study_uid, series_instance_uid=series_uid, is_primary=True)
        .exclude(state=ImageSetState.DELETED)
        .first()
    )
    parts = [member.part for member in members]
    if primary is not None and list(primary.grouping_keys) == list(grouping):
        if primary.state == ImageSetState.LOCKED:
            raise ImageSetBusy(primary.id, (study_uid, series_uid, grouping))
        current = primary.versions.get(version=primary.content_version)
        document = add_instances(decode_document(blob_store.get(current.metadata_key) or b""), parts)
        key = _write_version(blob_store=blob_store, image_set=primary, document=document,
                             version=primary.latest_version + 1, workflow=WorkflowStatus.IMPORTED, members=members)
        image_set = primary
    else:
        is_primary = primary is None and not _study_conflicts(datastore, study_uid, series_uid, grouping)
        image_set = ImageSet(
            datastore=datastore, is_primary=is_primary, study_instance_uid=study_uid,
            series_instance_uid=series_uid, grouping_keys=list(grouping),
        )
        document = add_instances(new_document(datastore_id=datastore.id, image_set_id=image_set.id), parts)
        image_set.save()
        key = _write_version(blob_store=blob_store, image_set=image_set, document=document, version=1,
                             workflow=WorkflowStatus.CREATED, members=members)
    summary = {
        "imageSetId": image_set.id,
        "imageSetVersion": image_set.latest_version,
        "isPrimary": image_set.is_primary,
        "numberOfMatchedSOPInstances": len({m.part.sop_uid for m in members}),
    }
    return summary, key
