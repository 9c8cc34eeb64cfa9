"""What a server process does once when it starts: pick up work a crash left behind, and remove what it left.

With the in-process worker, this process is the only worker, so every job still marked IN_PROGRESS belonged to a
process that is gone; with Celery, workers recover stale jobs themselves (config/celery.py). The periodic sweeps
(storage tiers, orphaned blobs) run here in threads of their own, or under Celery beat.
"""
from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connections, transaction

logger = logging.getLogger(__name__)


def recover_background_work() -> None:
    from imaging.models import Datastore, DatastoreStatus
    from imaging.services.datastores import datastore_provision, datastore_purge
    from imaging.services.imports import import_jobs_recover
    from imaging.tasks import enqueue

    try:
        count = import_jobs_recover(assume_dead=settings.APERTURE_TASKS != "celery")
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
    from imaging.storage import BlobStoreError, blob_store

    try:
        return blob_store().sweep_temporary()
    except (BlobStoreError, OSError):
        logger.warning("could not sweep the blob store's temporary files")
        return 0


def imagesets_recover() -> int:
    """Finish image set writes whose publishing step was cut off (their new metadata is already stored)."""
    from imaging.models import ImageSet, ImageSetState, WorkflowStatus
    from imaging.services.imageset_writes import imageset_publish, imageset_purge
    from imaging.tasks import enqueue

    locked = list(ImageSet.objects.filter(state=ImageSetState.LOCKED).values_list("id", "workflow_status"))
    for image_set_id, workflow in locked:
        with transaction.atomic():
            if workflow == WorkflowStatus.DELETING:
                enqueue(imageset_purge, image_set_id=image_set_id)
            else:
                final = WorkflowStatus.COPIED if workflow.startswith("COPYING") else WorkflowStatus.UPDATED
                enqueue(imageset_publish, image_set_ids=[image_set_id], workflow=final)
    return len(locked)


def _tiering_loop() -> None:
    from imaging.services.imageset_writes import imagesets_archive_sweep

    while True:
        time.sleep(settings.APERTURE_TIERING_SWEEP_SECONDS)
        try:
            moved = imagesets_archive_sweep()
            if moved:
                logger.info("moved %d image set(s) to ARCHIVE_INSTANT_ACCESS", moved)
        except DatabaseError:
            logger.warning("the tiering sweep could not reach the database")
        finally:
            connections.close_all()


def _orphan_loop() -> None:
    """The orphan blob sweep now (it lists the whole store, so not on the start-up path), then daily."""
    while True:
        _sweep_orphans()
        time.sleep(settings.APERTURE_ORPHAN_SWEEP_SECONDS)


def _sweep_orphans() -> None:
    from imaging.services.orphans import orphan_blobs_sweep
    from imaging.storage import BlobStoreError

    try:
        orphan_blobs_sweep()
    except DatabaseError:
        logger.warning("the orphan blob sweep could not reach the database")
    except BlobStoreError:
        logger.warning("the orphan blob sweep could not list or remove blobs")
    except Exception:  # the daily loop must outlive one bad sweep
        logger.exception("the orphan blob sweep failed")
    finally:
        connections.close_all()


def queue_orphan_sweep() -> None:
    """With Celery: hand the start-up sweep to the workers (beat runs it daily, config/celery.py)."""
    from imaging.services.orphans import orphan_blobs_sweep
    from imaging.tasks import enqueue

    enqueue(orphan_blobs_sweep)


def on_server_start() -> None:
    if settings.APERTURE_TASKS == "celery":
        return  # Celery workers recover and sweep on start, and beat runs the daily sweeps (config/celery.py)
    threading.Thread(target=recover_background_work, name="aperture-recover", daemon=True).start()
    threading.Thread(target=_tiering_loop, name="aperture-tiering", daemon=True).start()
    threading.Thread(target=_orphan_loop, name="aperture-orphans", daemon=True).start()
