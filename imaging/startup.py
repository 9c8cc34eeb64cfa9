"""What a server process does once when it starts: pick up work a crash left behind.

With the in-process worker, this process is the only worker, so every job still marked IN_PROGRESS belonged to a
process that is gone; with Celery, workers recover stale jobs themselves (config/celery.py).
"""
from __future__ import annotations

import logging
import threading

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
        if count:
            logger.info("re-queued %d interrupted import job(s)", count)
    except DatabaseError:
        logger.warning("could not check for interrupted jobs (is the database migrated?)")
    finally:
        connections.close_all()


def on_server_start() -> None:
    if settings.APERTURE_TASKS == "celery":
        return
    threading.Thread(target=recover_background_work, name="aperture-recover", daemon=True).start()
