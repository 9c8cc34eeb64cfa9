"""The default backend: a small pool of threads in the web process, which is then the only worker.

When the web process starts it runs the start hooks in a thread of their own and gives each periodic task a daemon
loop (a task declared `at_start` runs first and then sleeps; the others sleep first). A loop outlives a failed run.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from imaging.tasks import periodic_tasks, run_task, start_hooks
from imaging.tasks.backends.base import PeriodicTask, TaskBackend

logger = logging.getLogger(__name__)


def run_start_hooks() -> None:
    """Every start hook, in turn, in the calling thread; its database connections are closed after."""
    try:
        for hook in start_hooks():
            hook()
    finally:
        connections.close_all()


def start_hooks_in_thread() -> None:
    threading.Thread(target=run_start_hooks, name="aperture-recover", daemon=True).start()


class ThreadBackend(TaskBackend):
    workers_in_this_process = True

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def submit(self, name: str, kwargs: dict[str, Any]) -> None:
        self._thread_pool().submit(self._run, name, kwargs)

    def server_started(self) -> None:
        start_hooks_in_thread()
        for periodic in periodic_tasks():
            threading.Thread(target=self._loop, args=(periodic,), name=f"aperture-{periodic.name.rsplit('.', 1)[-1]}",
                             daemon=True).start()

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=settings.APERTURE_TASK_THREADS,
                                                thread_name_prefix="aperture-task")
            return self._pool

    @staticmethod
    def _run(name: str, kwargs: dict[str, Any]) -> None:
        close_old_connections()
        try:
            run_task(name, kwargs)
        except Exception:
            logger.exception("background task %s failed", name)
        finally:
            connections.close_all()

    @staticmethod
    def _loop(periodic: PeriodicTask) -> None:
        if not periodic.at_start:
            time.sleep(getattr(settings, periodic.every_setting))
        while True:
            try:
                run_task(periodic.name, {})
            except DatabaseError:
                logger.warning("the periodic task %s could not reach the database", periodic.name)
            except Exception:  # the loop must outlive one bad run
                logger.exception("the periodic task %s failed", periodic.name)
            finally:
                connections.close_all()
            time.sleep(getattr(settings, periodic.every_setting))
