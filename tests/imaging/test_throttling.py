"""The per-operation buckets through the configured shared state (Redis here, as several web processes use it; the
live test runs two processes against one bucket: tests/e2e/test_shared_state_live.py)."""
from __future__ import annotations

import uuid

import pytest

from imaging import throttling
from tests.servers import free_port

REDIS_BACKEND = "imaging.sharedstate.backends.redis.RedisSharedState"


@pytest.fixture
def redis_throttling(settings, monkeypatch):
    settings.APERTURE_THROTTLING_ENABLED = True
    settings.APERTURE_SHARED_STATE_BACKEND = REDIS_BACKEND
    settings.REDIS_URL = "redis://127.0.0.1:6379/13"
    settings.APERTURE_SHARED_STATE_PREFIX = f"test-{uuid.uuid4().hex}"
    monkeypatch.setenv("APERTURE_THROTTLE_ListDatastores", "0.0001/2")
    return settings


def test_an_operation_gets_its_burst_then_is_refused(redis_throttling):
    assert [throttling.allow("ListDatastores") for _ in range(3)] == [True, True, False]
    assert throttling.allow("GetDatastore")  # its own bucket


def test_calls_pass_while_the_shared_state_is_unreachable(redis_throttling):
    redis_throttling.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    assert all(throttling.allow("ListDatastores") for _ in range(3))


def test_nothing_is_taken_while_throttling_is_off(redis_throttling):
    redis_throttling.APERTURE_THROTTLING_ENABLED = False
    assert all(throttling.allow("ListDatastores") for _ in range(3))
