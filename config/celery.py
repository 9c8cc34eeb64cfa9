"""Celery application for APERTURE_TASKS=celery: `celery -A config.celery worker`."""
from __future__ import annotations

import os

import django
from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

app = Celery("aperture")
app.config_from_object("django.conf:settings", namespace="CELERY")


app.conf.beat_schedule = {
    "tiering-sweep": {
        "task": "aperture.run",
        "schedule": float(os.environ.get("APERTURE_TIERING_SWEEP_SECONDS", 24 * 3600)),
        "args": ("imaging.services.imageset_writes.imagesets_archive_sweep", {}),
    },
    "orphan-blob-sweep": {
        "task": "aperture.run",
        "schedule": float(os.environ.get("APERTURE_ORPHAN_SWEEP_SECONDS", 24 * 3600)),
        "args": ("imaging.services.orphans.orphan_blobs_sweep", {}),
    },
}


@app.task(name="aperture.run", acks_late=True, reject_on_worker_lost=True)
def run_aperture_task(name: str, kwargs: dict) -> None:
    from imaging.tasks import run_task

    run_task(name, kwargs)


@worker_ready.connect
def recover_on_start(**_kwargs) -> None:
    from imaging.startup import queue_orphan_sweep, recover_background_work

    recover_background_work()
    queue_orphan_sweep()  # a worker of its own runs it: a large store must not hold this worker's start back
