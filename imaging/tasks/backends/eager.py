"""Run each task at once in the enqueuing thread, after its commit: for scripts, management commands and tests.

A web process on this backend runs the start hooks (recovery) when it starts, but schedules no periodic task.
"""
from __future__ import annotations

from typing import Any

from imaging.tasks import run_task
from imaging.tasks.backends.base import TaskBackend
from imaging.tasks.backends.thread import start_hooks_in_thread


class EagerBackend(TaskBackend):
    workers_in_this_process = True

    def submit(self, name: str, kwargs: dict[str, Any]) -> None:
        run_task(name, kwargs)

    def server_started(self) -> None:
        start_hooks_in_thread()
