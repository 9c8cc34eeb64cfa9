"""Background work behind one small interface: `task` registers a function, `enqueue` runs it after commit.

The backend that runs tasks is chosen by a dotted path in settings, APERTURE_TASK_BACKEND (as Django picks an
EMAIL_BACKEND); config/settings.py maps the short APERTURE_TASKS alias onto it:
- thread (default, backends/thread.py): a small pool of threads in the web process; nothing else to run.
- celery (backends/celery.py): Celery workers fed through Redis; the web process only publishes.
- eager (backends/eager.py): run at once in the caller's thread, after commit (scripts, commands and tests).

Besides tasks, the registry holds what a backend runs by itself: periodic tasks (`periodic`, each declared once
next to its task; every backend that has workers of its own schedules them) and start hooks (`on_start`: what a
worker does once when it starts, such as picking up work a crash left behind).

Task functions take keyword arguments of plain JSON types and must be safe to run twice: a crash can replay them.
A task that finds its work held by another live worker (a redelivered copy of a task still running elsewhere)
raises `RetryLater`: the backend runs it again after the given delay, so a replay is never silently dropped.
`worker_name()` says which worker runs the current task (for the records that show where work ran).

Tasks register when their module is imported; ImagingConfig.ready() imports every service module, so every process
(web, worker, command) knows the same tasks. This module imports no backend implementation (it loads the one
settings name by its path), no service and never the project's `config`: backends and services import it.
"""
from __future__ import annotations

import os
import socket
import threading
from typing import Any, Callable, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from imaging.tasks.backends.base import PeriodicTask, TaskBackend

TaskFunction = TypeVar("TaskFunction", bound=Callable[..., Any])

_registry: dict[str, Callable[..., Any]] = {}
_periodic: dict[str, PeriodicTask] = {}
_start_hooks: list[Callable[[], None]] = []
_backends: dict[str, TaskBackend] = {}
_backends_lock = threading.Lock()


class RetryLater(Exception):
    """Raised by a task whose work is held by another worker that may still be alive: run me again in `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry in {seconds:g}s")
        self.seconds = seconds


_worker = threading.local()


def worker_name() -> str:
    """The name of the worker running the current task: the Celery node name when a backend set one for this
    thread, else host:pid; with the process id, so that prefork children of one worker tell apart."""
    name = getattr(_worker, "name", "") or socket.gethostname()
    return f"{name}:{os.getpid()}"


def worker_name_set(name: str) -> None:
    """A backend names the worker whose thread runs the next tasks."""
    _worker.name = name


def task_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__name__}"


def task(fn: TaskFunction) -> TaskFunction:
    """Register `fn` as a task, under its dotted name (the name a queue carries between processes)."""
    _registry[task_name(fn)] = fn
    return fn


def periodic(*, every: str, at_start: bool = False) -> Callable[[TaskFunction], TaskFunction]:
    """Declare a registered task periodic: run every `settings.<every>` seconds, and with `at_start` also once when
    workers start. The setting is read when a backend schedules the task, so it comes from settings alone."""

    def declare(fn: TaskFunction) -> TaskFunction:
        name = task_name(fn)
        if name not in _registry:
            raise LookupError(f"{name} must be registered with @task before @periodic")
        if not isinstance(getattr(settings, every, None), int):
            raise LookupError(f"periodic task {name}: settings.{every} is not a number of seconds")
        _periodic[name] = PeriodicTask(name=name, every_setting=every, at_start=at_start)
        return fn

    return declare


def on_start(fn: Callable[[], None]) -> Callable[[], None]:
    """Register what a worker does once when it starts (in the web process with the thread backend)."""
    if fn not in _start_hooks:
        _start_hooks.append(fn)
    return fn


def periodic_tasks() -> list[PeriodicTask]:
    return list(_periodic.values())


def start_hooks() -> list[Callable[[], None]]:
    return list(_start_hooks)


def run_task(name: str, kwargs: dict[str, Any]) -> Any:
    """Run a registered task by name; every backend runs tasks through here."""
    fn = _registry.get(name)
    if fn is None:
        raise LookupError(f"unknown task {name}")
    return fn(**kwargs)


def task_backend() -> TaskBackend:
    """The backend settings.APERTURE_TASK_BACKEND names; one instance per path, so a thread pool is made once."""
    path = settings.APERTURE_TASK_BACKEND
    with _backends_lock:
        backend = _backends.get(path)
        if backend is None:
            backend = _backends[path] = import_string(path)()
        return backend


def enqueue(fn: Callable[..., Any], **kwargs: Any) -> None:
    """Queue `fn(**kwargs)` to run once the current transaction commits (at once outside a transaction)."""
    name = task_name(fn)
    if name not in _registry:
        raise LookupError(f"{name} is not registered with @task")
    transaction.on_commit(lambda: task_backend().submit(name, kwargs))
