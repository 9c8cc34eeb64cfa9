"""Shared state in this process's memory: the embedded default (one web process) and in-process tests."""
from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from imaging.sharedstate.backends.base import SharedState


class MemorySharedState(SharedState):
    """Token buckets and windowed counters in dictionaries, under one lock. `clock` is in seconds; the buckets
    need only a steady one, the windows one that is aligned the same in every caller (tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # bucket -> (tokens, last refill time)
        self._windows: dict[int, tuple[int, dict[str, int]]] = {}  # window length -> (window index, counts)

    @classmethod
    def from_settings(cls) -> "MemorySharedState":
        return cls()

    def take_token(self, bucket: str, *, rate: float, burst: float) -> bool:
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(bucket, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - last) * rate)
            allowed = tokens >= 1
            self._buckets[bucket] = (tokens - 1 if allowed else tokens, now)
            return allowed

    def admit_in_window(self, limits: Sequence[tuple[str, int]], *, window_seconds: int) -> bool:
        with self._lock:
            index = int(self._clock() // window_seconds)
            current, counts = self._windows.get(window_seconds, (index, {}))
            if current != index:
                counts = {}
            self._windows[window_seconds] = (index, counts)
            if any(counts.get(name, 0) >= limit for name, limit in limits):
                return False
            for name, _ in limits:
                counts[name] = counts.get(name, 0) + 1
            return True
