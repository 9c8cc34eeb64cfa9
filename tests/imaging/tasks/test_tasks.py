"""The task interface and its backends: registration in every process, the alias setting, periodic declarations."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from django.db import transaction

from imaging.services.imageset_writes import imagesets_archive_sweep
from imaging.services.orphans import orphan_blobs_sweep
from imaging.services.recovery import background_work_recover
from imaging.services.imports import import_work_recover
from imaging.tasks import RetryLater, enqueue, periodic_tasks, start_hooks, task, task_backend, task_name
from imaging.tasks.backends.celery import RUN_TASK, beat_schedule
from imaging.tasks.backends.celery import CeleryBackend
from imaging.tasks.backends.eager import EagerBackend
from imaging.tasks.backends.thread import ThreadBackend
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_SETTINGS", "APERTURE_TASKS"))}
    environment.update({"DJANGO_SETTINGS_MODULE": "config.settings", **env})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True)


def test_a_fresh_process_knows_every_task_once_django_is_set_up():
    """What a new Celery worker sees: ready() registered the tasks, the periodic ones and the start hook."""
    result = _python("import django; django.setup(); from imaging import tasks;"
                     "print(sorted(tasks._registry)); print([p.name for p in tasks.periodic_tasks()]);"
                     "print([f.__name__ for f in tasks.start_hooks()])")
    assert result.returncode == 0, result.stderr
    registered, periodic, hooks = result.stdout.strip().splitlines()
    for fn in (orphan_blobs_sweep, imagesets_archive_sweep):
        assert task_name(fn) in registered and task_name(fn) in periodic
    assert "imaging.services.imports.import_job_run" in registered
    assert hooks == "['background_work_recover']"


@pytest.mark.parametrize("alias", ["thread", "celery", "eager"])
def test_the_aperture_tasks_alias_names_a_backend_class(alias):
    result = _python("from django.conf import settings; print(settings.APERTURE_TASK_BACKEND)", APERTURE_TASKS=alias)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"{alias.capitalize()}Backend")


def test_a_bad_alias_fails_at_start_naming_the_variable():
    result = _python("from django.conf import settings; settings.APERTURE_TASK_BACKEND", APERTURE_TASKS="rabbit")
    assert result.returncode != 0
    assert "APERTURE_TASKS must be one of thread, celery, eager, not 'rabbit'" in result.stderr


def test_the_backend_is_the_one_settings_name(settings):
    settings.APERTURE_TASK_BACKEND = "imaging.tasks.backends.eager.EagerBackend"
    assert isinstance(task_backend(), EagerBackend)
    assert task_backend() is task_backend()


ran: list[int] = []


@task
def _remember(*, value: int) -> None:
    ran.append(value)


@pytest.mark.django_db(transaction=True)
def test_enqueue_runs_after_commit_and_not_after_rollback():
    ran.clear()
    with transaction.atomic():
        enqueue(_remember, value=1)
        assert ran == []
    assert ran == [1]
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue(_remember, value=2)
        raise RuntimeError("roll back")
    assert ran == [1]


def test_enqueue_refuses_an_unregistered_function():
    with pytest.raises(LookupError, match="not registered"):
        enqueue(lambda: None)


def test_each_periodic_task_is_declared_once_with_its_interval_setting():
    declared = {periodic.name: periodic for periodic in periodic_tasks()}
    assert len(declared) == len(periodic_tasks())
    assert declared[task_name(imagesets_archive_sweep)].every_setting == "APERTURE_TIERING_SWEEP_SECONDS"
    assert not declared[task_name(imagesets_archive_sweep)].at_start
    assert declared[task_name(orphan_blobs_sweep)].every_setting == "APERTURE_ORPHAN_SWEEP_SECONDS"
    assert declared[task_name(orphan_blobs_sweep)].at_start
    assert background_work_recover in start_hooks()


def test_the_beat_schedule_has_each_periodic_task_once_with_intervals_from_settings(settings):
    settings.APERTURE_TIERING_SWEEP_SECONDS = 600
    settings.APERTURE_ORPHAN_SWEEP_SECONDS = 7200
    schedule = beat_schedule()
    assert sorted(schedule) == sorted(periodic.name for periodic in periodic_tasks())
    tiering = schedule[task_name(imagesets_archive_sweep)]
    assert tiering == {"task": RUN_TASK, "schedule": 600.0, "args": (task_name(imagesets_archive_sweep), {})}
    assert schedule[task_name(orphan_blobs_sweep)]["schedule"] == 7200.0


def test_import_recovery_is_periodic_on_its_own_interval_setting(settings):
    declared = {periodic.name: periodic for periodic in periodic_tasks()}
    assert declared[task_name(import_work_recover)].every_setting == "APERTURE_RECOVERY_EVERY_SECONDS"
    settings.APERTURE_RECOVERY_EVERY_SECONDS = 7
    assert beat_schedule()[task_name(import_work_recover)]["schedule"] == 7.0


def test_only_celery_distributes_work():
    assert CeleryBackend.distributes_work
    assert not ThreadBackend.distributes_work and not EagerBackend.distributes_work


attempts: list[int] = []
retried = threading.Event()


@task
def _busy_once(*, value: int) -> None:
    attempts.append(value)
    if len(attempts) == 1:
        raise RetryLater(0.01)
    retried.set()


def test_a_task_that_asks_to_retry_later_runs_again_on_the_thread_backend():
    """What a redelivered import batch held by a live worker does: it is not dropped, it comes back."""
    attempts.clear()
    retried.clear()
    ThreadBackend().submit(task_name(_busy_once), {"value": 3})
    assert retried.wait(30)
    assert attempts == [3, 3]
