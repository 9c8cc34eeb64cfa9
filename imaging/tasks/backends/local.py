"""What the backends whose workers live in the web process (thread, eager) do when that process starts.

Such a process is the only worker: it runs the start hooks (recovery of work a crash left in progress) in a thread
of their own, and gives each periodic task a daemon loop (a task declared `at_start` runs first and then sleeps; the
others sleep first). A loop outlives a failed run. Backends with workers elsewhere (celery) leave both to them.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections

from imaging.tasks import RetryLater, periodic_tasks, run_task, start_hooks
from imaging.tasks.backends.base import PeriodicTask, TaskBackend

logger = logging.getLogger(__name__)


def run_start_hooks() -> None:
    """Every start hook, in turn, in the calling thread; its database connections are closed after."""
    try:
        for hook in start_hooks():
            hook()
    finally:
        connections.close_all()


class LocalWorkersBackend(TaskBackend):
    """A backend whose tasks run in this process."""

    workers_in_this_process = True

    def run_or_retry_later(self, name: str, kwargs: dict[str, Any]) -> None:
        """Run the task; one that raises RetryLater is submitted again after its delay, from a timer thread."""
        try:
            run_task(name, kwargs)
        except RetryLater as e:
            timer = threading.Timer(e.seconds, self.submit, args=(name, kwargs))
            timer.daemon = True
            timer.start()

    def server_started(self) -> None:
        threading.Thread(target=run_start_hooks, name="aperture-recover", daemon=True).start()
        for periodic in periodic_tasks():
            threading.Thread(target=self._loop, args=(periodic,), name=f"aperture-{periodic.name.rsplit('.', 1)[-1]}",
                             daemon=True).start()

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
