"""Background work behind one small interface: `task` registers a function, `enqueue` runs it after commit.

Backends, chosen by APERTURE_TASKS:
- thread (default): a small pool of threads in the web process; nothing else to run.
- celery: Celery workers fed through Redis (config/celery.py); the web process only publishes.
- eager: run at once in the caller's thread, after commit (scripts and management commands).
Task functions take keyword arguments of plain JSON types and must be safe to run twice: a crash can replay them.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from django.conf import settings
from django.db import close_old_connections, connections, transaction

logger = logging.getLogger(__name__)

_registry: dict[str, Callable[..., None]] = {}
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def task(fn: Callable[..., None]) -> Callable[..., None]:
    _registry[f"{fn.__module__}.{fn.__name__}"] = fn
    return fn


def run_task(name: str, kwargs: dict[str, Any]) -> None:
    """Run a registered task by name; used by every backend."""
    _load_task_modules()
    fn = _registry.get(name)
    if fn is None:
        raise LookupError(f"unknown task {name}")
    fn(**kwargs)


def _load_task_modules() -> None:
    # Tasks live in services; importing them fills the registry in a fresh worker process.
    import imaging.services.datastores  # noqa: F401
    import imaging.services.imports  # noqa: F401
    import imaging.services.imageset_writes  # noqa: F401
    import imaging.services.orphans  # noqa: F401


def _run_in_thread(name: str, kwargs: dict[str, Any]) -> None:
    close_old_connections()
    try:
        run_task(name, kwargs)
    except Exception:
        logger.exception("background task %s failed", name)
    finally:
        connections.close_all()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.APERTURE_TASK_THREADS, thread_name_prefix="aperture-task")
        return _pool


def _submit(name: str, kwargs: dict[str, Any]) -> None:
    backend = settings.APERTURE_TASKS
    if backend == "eager":
        run_task(name, kwargs)
    elif backend == "celery":
        from config.celery import run_aperture_task

        run_aperture_task.delay(name, kwargs)
    else:
        _thread_pool().submit(_run_in_thread, name, kwargs)


def enqueue(fn: Callable[..., None], **kwargs: Any) -> None:
    """Queue `fn(**kwargs)` to run once the current transaction commits (at once outside a transaction)."""
    name = f"{fn.__module__}.{fn.__name__}"
    if name not in _registry:
        raise LookupError(f"{name} is not registered with @task")
    transaction.on_commit(lambda: _submit(name, kwargs))
