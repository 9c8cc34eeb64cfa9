"""Shared state in Redis, for several web processes: every decision is one Lua script, so it is atomic (Redis runs a
script alone) and needs one round trip. Time comes from Redis (TIME), not from the callers, so processes on
machines with drifting clocks still share one bucket and one window.

Keys are `<APERTURE_SHARED_STATE_PREFIX>:bucket:<name>` and `...:window:<seconds>:<name>`, each a small hash with an
expiry: a bucket lives as long as it takes to refill, a window counter two windows. The database is REDIS_URL's.
A Redis error is logged once per outage (never the URL: it may carry a password) and raised as
SharedStateUnavailable; what that means for a request is the caller's decision.
"""
from __future__ import annotations

import logging
import threading
from typing import Sequence

import redis
from django.conf import settings

from imaging.sharedstate.backends.base import SharedState, SharedStateUnavailable

logger = logging.getLogger(__name__)

# KEYS[1] the bucket; ARGV rate per second, burst, expiry in milliseconds. Returns 1 when a token was taken.
TAKE_TOKEN = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return taken
"""

# KEYS the counters; ARGV[1] the window in seconds, ARGV[1 + i] the limit of KEYS[i]. Returns 1 when admitted.
ADMIT_IN_WINDOW = """
local window = tonumber(ARGV[1])
local index = math.floor(tonumber(redis.call('TIME')[1]) / window)
local counts = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'window', 'count')
  counts[i] = 0
  if tonumber(state[1]) == index then counts[i] = tonumber(state[2]) end
  if counts[i] >= tonumber(ARGV[i + 1]) then return 0 end
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'window', string.format('%d', index), 'count', counts[i] + 1)
  redis.call('EXPIRE', key, 2 * window)
end
return 1
"""

LONGEST_BUCKET_MS = 24 * 3600 * 1000  # a bucket that refills slower than this (or never) is forgotten after a day


class RedisSharedState(SharedState):
    def __init__(self, *, url: str, prefix: str, timeout_seconds: float = 2.0) -> None:
        # A short socket timeout: a request must not hang on a throttle check while Redis is unreachable.
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_seconds,
                                            socket_connect_timeout=timeout_seconds, health_check_interval=30)
        self._prefix = prefix
        self._take_token = self._client.register_script(TAKE_TOKEN)
        self._admit_in_window = self._client.register_script(ADMIT_IN_WINDOW)
        self._failing = False
        self._failing_lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> "RedisSharedState":
        return cls(url=settings.REDIS_URL, prefix=settings.APERTURE_SHARED_STATE_PREFIX)

    def take_token(self, bucket: str, *, rate: float, burst: float) -> bool:
        refill_ms = int(burst / rate * 1000) + 1000 if rate > 0 else LONGEST_BUCKET_MS
        args = [repr(float(rate)), repr(float(burst)), min(refill_ms, LONGEST_BUCKET_MS)]
        return self._run(self._take_token, [f"{self._prefix}:bucket:{bucket}"], args) == 1

    def admit_in_window(self, limits: Sequence[tuple[str, int]], *, window_seconds: int) -> bool:
        keys = [f"{self._prefix}:window:{window_seconds}:{name}" for name, _ in limits]
        return self._run(self._admit_in_window, keys, [window_seconds, *(limit for _, limit in limits)]) == 1

    def _run(self, script, keys: list[str], args: list) -> int:
        try:
            answer = int(script(keys=keys, args=args))
        except redis.RedisError as e:
            with self._failing_lock:
                first, self._failing = not self._failing, True
            if first:
                logger.warning("shared state: Redis failed (%s: %s); logged once until it answers again",
                               type(e).__name__, e)
            raise SharedStateUnavailable(str(e)) from e
        if self._failing:
            with self._failing_lock:
                self._failing = False
            logger.warning("shared state: Redis answers again")
        return answer
