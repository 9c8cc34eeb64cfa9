"""Picking up the work a crash left behind, once where workers start.

`background_work_recover` is a start hook (imaging/tasks): the task backend runs it where its workers start, in
the web process with the thread and eager backends, in each Celery worker with celery. With workers in this process, every
job still marked IN_PROGRESS belonged to a process that is gone; with Celery, a live worker may still hold one, so
only stale ones are taken back. The periodic sweeps (storage tiers, orphaned blobs) are declared next to their
tasks and scheduled by the backend. This module enqueues tasks; it never runs a backend's machinery itself.
"""
from __future__ import annotations

import logging

from django.db import DatabaseError, connections, transaction

from imaging.models import Datastore, DatastoreStatus, ImageSet, ImageSetState, WorkflowStatus
from imaging.services.datastores import datastore_provision, datastore_purge
from imaging.services.imageset_writes import imageset_publish, imageset_purge
from imaging.services.imports import import_jobs_recover
from imaging.storage import BlobStoreError, blob_store
from imaging.tasks import enqueue, on_start, task_backend

logger = logging.getLogger(__name__)


@on_start
def background_work_recover() -> None:
    """Re-queue interrupted import jobs, data store provisioning and purges, and image set writes; sweep the blob
    store's temporary files. A database that is not there yet (not migrated) is logged, not raised."""
    try:
        count = import_jobs_recover(assume_dead=task_backend().workers_in_this_process)
        for datastore_id in Datastore.objects.filter(status=DatastoreStatus.CREATING).values_list("id", flat=True):
            with transaction.atomic():
                enqueue(datastore_provision, datastore_id=datastore_id)
        for datastore_id in Datastore.objects.filter(status=DatastoreStatus.DELETING).values_list("id", flat=True):
            with transaction.atomic():
                enqueue(datastore_purge, datastore_id=datastore_id)
        count_sets = imagesets_recover()
        swept = _sweep_blob_store()
        if swept:
            logger.info("removed %d temporary blob file(s) left by interrupted writes", swept)
        if count:
            logger.info("re-queued %d interrupted import job(s)", count)
        if count_sets:
            logger.info("re-queued %d interrupted image set write(s)", count_sets)
    except DatabaseError:
        logger.warning("could not check for interrupted jobs (is the database migrated?)")
    finally:
        connections.close_all()


def _sweep_blob_store() -> int:
    try:
        return blob_store().sweep_temporary()
    except (BlobStoreError, OSError):
        logger.warning("could not sweep the blob store's temporary files")
        return 0


def imagesets_recover() -> int:
    """Finish image set writes whose publishing step was cut off (their new metadata is already stored)."""
    locked = list(ImageSet.objects.filter(state=ImageSetState.LOCKED).values_list("id", "workflow_status"))
    for image_set_id, workflow in locked:
        with transaction.atomic():
            if workflow == WorkflowStatus.DELETING:
                enqueue(imageset_purge, image_set_id=image_set_id)
            else:
                final = WorkflowStatus.COPIED if workflow.startswith("COPYING") else WorkflowStatus.UPDATED
                enqueue(imageset_publish, image_set_ids=[image_set_id], workflow=final)
    return len(locked)
