"""Readiness checks behind `/readyz` (issue 13 item 8): can this process serve, given what it depends on?

One check per dependency, each reduced to a name and a fixed word (`ok`, `failed`, `timeout`): the database, the blob
store, the Celery broker (only with APERTURE_TASKS=celery, where imports wait on it) and the channel layer (only when it
lives outside the process). An exception's text is never shown or logged: driver messages carry host names, user names
and sometimes passwords of connection strings. Only the exception's class is logged.

The checks run side by side in a small pool of threads, each given CHECK_TIMEOUT_SECONDS; one that has not answered
by then counts as `timeout` (its thread finishes on its own, bounded by the driver's own timeouts). The answer is kept
for READY_MAX_AGE_SECONDS and computed by one caller at a time, so an unauthenticated flood of probes costs at most one
round of connections a second, not one per request.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable

from django.conf import settings
from django.db import connections

from imaging.storage import blob_store

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
READY_MAX_AGE_SECONDS = 1.0
OK, FAILED, TIMEOUT = "ok", "failed", "timeout"

_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="aperture-health")
_cache_lock = threading.Lock()
_cached: tuple[float, "Readiness"] | None = None


@dataclass(frozen=True)
class Readiness:
    """Each check's name and its word; `ready` when every word is `ok`."""

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(word == OK for word in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, word in self.checks.items() if word != OK]


def database_check() -> None:
    """A round trip on a connection of the checking thread, closed afterwards (the pool's threads are reused and
    must not hold connections between probes)."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def blob_store_check() -> None:
    blob_store().check()


def _redis_ping(client) -> None:
    try:
        client.ping()
    finally:
        client.close()


def broker_check() -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        _redis_ping(redis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
                                         socket_timeout=CHECK_TIMEOUT_SECONDS))
        return
    from kombu import Connection

    with Connection(url, connect_timeout=CHECK_TIMEOUT_SECONDS) as broker:
        broker.ensure_connection(max_retries=1)


def channel_layer_check() -> None:
    """A ping to every Redis host the layer names (the core and the pub/sub layer take the same `hosts`), through a
    short-lived client of our own: the layer's pools belong to the event loops that made them."""
    import redis
    from channels_redis.utils import decode_hosts

    timeouts = {"socket_connect_timeout": CHECK_TIMEOUT_SECONDS, "socket_timeout": CHECK_TIMEOUT_SECONDS}
    for host in decode_hosts(settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts")):
        host = dict(host)
        if "address" in host:
            _redis_ping(redis.Redis.from_url(host.pop("address"), **timeouts))
        elif "master_name" in host:
            from redis.sentinel import Sentinel

            sentinel = Sentinel(host["sentinels"], sentinel_kwargs=host.get("sentinel_kwargs"), **timeouts)
            _redis_ping(sentinel.master_for(host["master_name"]))
        else:
            _redis_ping(redis.Redis(host=host.get("host", "localhost"), port=host.get("port", 6379), **timeouts))


def _external_channel_layer() -> bool:
    return not settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer")


def _celery_tasks() -> bool:
    return settings.APERTURE_TASK_BACKEND.endswith(".CeleryBackend")


def readiness_checks() -> dict[str, Callable[[], None]]:
    """The checks that apply to this configuration, by the name `/readyz` shows."""
    checks: dict[str, Callable[[], None]] = {"database": database_check, "blob_store": blob_store_check}
    if _celery_tasks():
        checks["broker"] = broker_check
    if _external_channel_layer():
        checks["channel_layer"] = channel_layer_check
    return checks


def _run(name: str, check: Callable[[], None]) -> str:
    try:
        check()
    except Exception as e:  # any failure means "not ready"; its text may hold a connection string
        logger.warning("readiness check %s failed: %s", name, type(e).__name__)
        return FAILED
    return OK


def health_ready(*, max_age: float = READY_MAX_AGE_SECONDS, timeout: float = CHECK_TIMEOUT_SECONDS) -> Readiness:
    """Every applicable check's word, at most `max_age` seconds old."""
    global _cached
    with _cache_lock:  # one caller computes; the others wait for it and read its answer
        now = time.monotonic()
        if _cached is not None and now - _cached[0] < max_age:
            return _cached[1]
        futures = {name: _pool.submit(_run, name, check) for name, check in readiness_checks().items()}
        deadline = now + timeout
        words = {}
        for name, future in futures.items():
            try:
                words[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                logger.warning("readiness check %s timed out", name)
                words[name] = TIMEOUT
        readiness = Readiness(checks=words)
        _cached = (time.monotonic(), readiness)
        return readiness


def health_forget() -> None:
    """Drop the kept answer (tests that change the configuration between probes)."""
    global _cached
    with _cache_lock:
        _cached = None
