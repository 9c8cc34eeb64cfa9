"""The interface of a shared-state backend: two atomic decisions, nothing else. No Django, no Redis here."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence


class SharedStateUnavailable(Exception):
    """The store could not be reached or answered with an error; the backend has logged it."""


class SharedState(ABC):
    @classmethod
    @abstractmethod
    def from_settings(cls) -> "SharedState":
        """The backend configured by Django's settings."""

    @abstractmethod
    def take_token(self, bucket: str, *, rate: float, burst: float) -> bool:
        """Take one token from the token bucket `bucket` (refilled at `rate` per second up to `burst`, full when
        first seen); False, and nothing taken, when less than one token is left."""

    @abstractmethod
    def admit_in_window(self, limits: Sequence[tuple[str, int]], *, window_seconds: int) -> bool:
        """Count one event under every counter of `limits` ((name, limit) pairs) if each has counted fewer than its
        limit in the current window of `window_seconds` (windows are aligned on the clock, counters restart in each);
        otherwise count it nowhere and return False. All or nothing, so a counter is only ever created for an
        admitted event: with a total among the limits, memory stays bounded by that total."""
