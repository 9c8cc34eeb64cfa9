"""Celery workers fed through Redis: the web process only publishes, workers recover and sweep for themselves.

Every task travels as the one Celery task `aperture.run` (the registered task's name and its keyword arguments), so
Celery needs to know nothing of our registry. `celery_app_install` makes a Celery app Aperture's: the project's
config/celery.py creates the app for `celery -A config.celery worker|beat` and calls it; a web process that has not
imported that module installs an app of its own the first time it publishes. Each installed app gets:
- `aperture.run`, acknowledged late and rejected when its worker is lost, so a crash replays it; a task that
  raises RetryLater is retried after its delay (Celery's retry: a new message, this one acknowledged);
- a beat schedule built from the periodic declarations, each task once, its interval from settings;
- on a worker's start, the start hooks (recovery), then the `at_start` periodic tasks queued for any worker.
"""
from __future__ import annotations

import threading
from typing import Any

from celery import Celery, Task
from celery.signals import worker_ready
from django.conf import settings

from imaging.tasks import RetryLater, periodic_tasks, run_task, start_hooks, worker_name_set
from imaging.tasks.backends.base import TaskBackend

RUN_TASK = "aperture.run"

_app: Celery | None = None
_app_lock = threading.Lock()


def _run(self: Task, name: str, kwargs: dict[str, Any]) -> None:
    worker_name_set(self.request.hostname or "")
    try:
        run_task(name, kwargs)
    except RetryLater as e:
        # A redelivered copy of work another worker may still hold: it comes back later, never dropped.
        raise self.retry(countdown=e.seconds, max_retries=None) from None


def beat_schedule() -> dict[str, dict[str, Any]]:
    """One beat entry per periodic task, keyed by the task's name."""
    return {
        periodic.name: {
            "task": RUN_TASK,
            "schedule": float(getattr(settings, periodic.every_setting)),
            "args": (periodic.name, {}),
        }
        for periodic in periodic_tasks()
    }


def celery_app_install(app: Celery) -> Celery:
    """Configure `app` from Django's CELERY_* settings, give it `aperture.run` and the beat schedule, and make it the
    app this process publishes through. Call it after django.setup(), when every task module is registered."""
    global _app
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.task(name=RUN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)(_run)
    app.conf.beat_schedule = beat_schedule()
    with _app_lock:
        _app = app
    return app


def _run_task_of_app() -> Task:
    with _app_lock:
        app = _app
    if app is None:
        app = celery_app_install(Celery("aperture"))
    return app.tasks[RUN_TASK]


@worker_ready.connect
def _on_worker_ready(**_kwargs: Any) -> None:
    for hook in start_hooks():
        hook()
    for periodic in periodic_tasks():
        if periodic.at_start:
            # Queued, not run here: a large store's sweep must not hold this worker's start back.
            _run_task_of_app().delay(periodic.name, {})


class CeleryBackend(TaskBackend):
    workers_in_this_process = False
    distributes_work = True

    def submit(self, name: str, kwargs: dict[str, Any]) -> None:
        _run_task_of_app().delay(name, kwargs)
