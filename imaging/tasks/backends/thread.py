"""The default backend: a small pool of threads in the web process, which is then the only worker (its start-up
work and periodic loops: backends/local.py)."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections

from imaging.tasks.backends.local import LocalWorkersBackend

logger = logging.getLogger(__name__)


class ThreadBackend(LocalWorkersBackend):
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def submit(self, name: str, kwargs: dict[str, Any]) -> None:
        self._thread_pool().submit(self._run, name, kwargs)

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=settings.APERTURE_TASK_THREADS,
                                                thread_name_prefix="aperture-task")
            return self._pool

    def _run(self, name: str, kwargs: dict[str, Any]) -> None:
        close_old_connections()
        try:
            self.run_or_retry_later(name, kwargs)
        except Exception:
            logger.exception("background task %s failed", name)
        finally:
            connections.close_all()
