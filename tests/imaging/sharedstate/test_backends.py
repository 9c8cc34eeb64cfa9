"""The shared-state backends against one reference: the in-process one and Redis (a real server, its own key
prefix), the same decisions from both. Two processes on one Redis: tests/e2e/test_shared_state_live.py."""
from __future__ import annotations

import threading
import uuid
from typing import Iterator

import pytest

from imaging.sharedstate import SharedStateUnavailable
from imaging.sharedstate.backends.base import SharedState
from imaging.sharedstate.backends.memory import MemorySharedState
from imaging.sharedstate.backends.redis import RedisSharedState
from tests.servers import free_port

REDIS_URL = "redis://127.0.0.1:6379/13"
SLOW = 0.0001  # tokens per second: none come back while a test runs


def redis_state() -> RedisSharedState:
    return RedisSharedState(url=REDIS_URL, prefix=f"test-{uuid.uuid4().hex}")


@pytest.fixture(params=["memory", "redis"])
def state(request) -> Iterator[SharedState]:
    if request.param == "memory":
        yield MemorySharedState()
        return
    backend = redis_state()
    yield backend
    keys = list(backend._client.scan_iter(f"{backend._prefix}:*"))
    if keys:
        backend._client.delete(*keys)


class TestTokenBuckets:
    def test_a_full_bucket_gives_its_burst_then_refuses(self, state):
        assert [state.take_token("ListDatastores", rate=SLOW, burst=3) for _ in range(5)] == [True] * 3 + [False] * 2

    def test_buckets_are_separate(self, state):
        assert state.take_token("CreateDatastore", rate=SLOW, burst=1)
        assert not state.take_token("CreateDatastore", rate=SLOW, burst=1)
        assert state.take_token("GetDatastore", rate=SLOW, burst=1)

    def test_concurrent_takers_share_one_burst(self, state):
        """Eight threads race for 40 tokens, 20 tries each: exactly 40 win (one read-modify-write per take)."""
        taken: list[bool] = []
        lock = threading.Lock()

        def hammer() -> None:
            results = [state.take_token("GetImageFrame", rate=SLOW, burst=40) for _ in range(20)]
            with lock:
                taken.extend(results)

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(taken) == 40 and len(taken) == 160

    def test_a_bucket_refills_at_its_rate(self):
        now = [1000.0]
        state = MemorySharedState(clock=lambda: now[0])
        assert state.take_token("GetImageSet", rate=2, burst=2) and state.take_token("GetImageSet", rate=2, burst=2)
        assert not state.take_token("GetImageSet", rate=2, burst=2)
        now[0] += 0.5
        assert state.take_token("GetImageSet", rate=2, burst=2)
        now[0] += 3600
        assert sum(state.take_token("GetImageSet", rate=2, burst=2) for _ in range(5)) == 2  # never above the burst

    def test_two_redis_clients_share_the_bucket(self):
        """What two web processes see: separate connections, one bucket."""
        first = redis_state()
        second = RedisSharedState(url=REDIS_URL, prefix=first._prefix)
        assert first.take_token("SearchImageSets", rate=SLOW, burst=2)
        assert second.take_token("SearchImageSets", rate=SLOW, burst=2)
        assert not first.take_token("SearchImageSets", rate=SLOW, burst=2)
        assert not second.take_token("SearchImageSets", rate=SLOW, burst=2)


class TestWindows:
    def test_every_limit_holds_and_a_refusal_counts_nowhere(self, state):
        def admitted(address: str, times: int) -> int:
            limits = [("total", 5), (f"address:{address}", 3)]
            return sum(state.admit_in_window(limits, window_seconds=3600) for _ in range(times))

        assert admitted("192.0.2.1", 10) == 3
        assert admitted("192.0.2.2", 10) == 2  # the total is spent
        assert admitted("192.0.2.3", 1) == 0

    def test_counts_restart_each_window(self):
        now = [120.0]
        state = MemorySharedState(clock=lambda: now[0])
        limits = [("total", 5), ("address:192.0.2.1", 3)]
        assert sum(state.admit_in_window(limits, window_seconds=60) for _ in range(10)) == 3
        now[0] += 60
        assert sum(state.admit_in_window(limits, window_seconds=60) for _ in range(10)) == 3


def test_an_unreachable_redis_is_an_error_of_ours():
    state = RedisSharedState(url=f"redis://127.0.0.1:{free_port()}/0", prefix="unreachable", timeout_seconds=0.5)
    with pytest.raises(SharedStateUnavailable):
        state.take_token("ListDatastores", rate=1, burst=1)
    with pytest.raises(SharedStateUnavailable):
        state.admit_in_window([("total", 1)], window_seconds=60)
