"""Counters that every web process must agree on: the API's token buckets (imaging/throttling.py) and the budget of
anonymous refusals the audit table takes per minute (imaging/services/audit.py).

The backend is chosen by a dotted path in settings, APERTURE_SHARED_STATE_BACKEND, which config/settings.py maps
from the short APERTURE_SHARED_STATE alias:
- memory (backends/memory.py, the embedded default): dictionaries in this process; right for one web process.
- redis (backends/redis.py, the default with APERTURE_TASKS=celery or APERTURE_REDIS_CHANNELS): one Lua script per
  decision in the Redis of REDIS_URL, so several web processes (on one machine or many) share one bucket.

Login throttling is not here: django-axes keeps its counts in the database (imaging/auth.py), which every web
process shares already. This module holds no HTTP and no policy: callers decide what an unreachable store means.
"""
from __future__ import annotations

import threading

from django.conf import settings
from django.utils.module_loading import import_string

from imaging.sharedstate.backends.base import SharedState, SharedStateUnavailable

__all__ = ["SharedState", "SharedStateUnavailable", "shared_state"]

_backends: dict[tuple[str, str, str], SharedState] = {}
_lock = threading.Lock()


def shared_state() -> SharedState:
    """The configured backend of this process (one per backend, Redis URL and key prefix, so settings overridden in
    tests take effect)."""
    address = (settings.APERTURE_SHARED_STATE_BACKEND, settings.REDIS_URL, settings.APERTURE_SHARED_STATE_PREFIX)
    with _lock:
        if address not in _backends:
            _backends[address] = import_string(address[0]).from_settings()
        return _backends[address]
