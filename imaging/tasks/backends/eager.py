"""Run each task at once in the enqueuing thread, after its commit: for scripts, management commands and tests.

A web process on this backend is its only worker: it recovers and runs the periodic loops (backends/local.py).
"""
from __future__ import annotations

from typing import Any

from imaging.tasks.backends.local import LocalWorkersBackend


class EagerBackend(LocalWorkersBackend):
    def submit(self, name: str, kwargs: dict[str, Any]) -> None:
        self.run_or_retry_later(name, kwargs)
