"""The interface every task backend implements, and what it is given to schedule.

A backend runs registered tasks by name (`submit`) and decides where workers live: in this process (thread, eager)
or elsewhere (celery). Where they live decides what happens when the web process starts (`server_started`): a
backend with workers here runs the start hooks and schedules the periodic tasks; one whose workers live elsewhere
leaves both to them. This module imports nothing of Aperture's, so the `imaging.tasks` interface can name it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PeriodicTask:
    """A registered task run every `settings.<every_setting>` seconds; with `at_start` also once as workers start."""

    name: str
    every_setting: str
    at_start: bool = False


class TaskBackend(ABC):
    #: Whether tasks run in this process: then, when it starts, work a crash left marked in progress belonged to a
    #: process that is gone; with workers elsewhere, a live worker may still hold it.
    workers_in_this_process: bool = True
    #: Whether tasks reach workers in other processes and machines: then one large job is worth splitting into
    #: tasks (imports fan out into batches of files); otherwise a job runs in one task on a local process pool.
    distributes_work: bool = False

    @abstractmethod
    def submit(self, name: str, kwargs: dict[str, Any]) -> None:
        """Run the registered task `name` with `kwargs` now or soon; called after the enqueuing commit."""

    def server_started(self) -> None:
        """The web process has started; by default there is nothing for the backend to do in it."""
