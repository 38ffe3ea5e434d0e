"""Rate limits that hold for the whole deployment, kept in Redis (docs/deploy.md).

The in-process ``RateLimiter`` (api/limits.py) counts per process, so N replicas would let a
user make N times the limit. With ``CHATKEEP_REDIS_URL`` set, every replica counts in one Redis
sorted set per key instead: the same sliding one-minute window, checked and recorded in one Lua
script (atomic in Redis) on Redis's own clock, so replicas' clocks do not matter.

If Redis is unreachable the request is counted by the in-process limiter instead: the limit
stays a guard (per replica) rather than failing every request while Redis is away.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import uuid
from typing import Any

from redis.exceptions import RedisError

from chatkeep.api.limits import RateLimiter
from chatkeep.problems import RateLimited
from chatkeep.settings import Settings
from chatkeep.turns import redis_relay

log = logging.getLogger("chatkeep.api")

_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


class RedisRateLimiter:
    """``per_minute`` hits per key per sliding minute, across every replica."""

    def __init__(self, url: str, per_minute: int, *, prefix: str) -> None:
        self.per_minute = per_minute
        self.prefix = prefix
        self.redis = redis_relay.client(url)
        self._script = self.redis.register_script(_SLIDING_WINDOW)
        self.fallback = RateLimiter(per_minute)
        self._warned_at = -1e9

    async def hit(self, key: str) -> None:
        if self.per_minute <= 0:
            return
        try:
            wait_ms = await self._script(
                keys=[f"chatkeep:rate:{self.prefix}:{key}"],
                args=[60_000, self.per_minute, uuid.uuid4().hex],
            )
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at > 10:  # once per 10 s, not once per request
                self._warned_at = now
                log.warning("rate limits kept per process: redis unavailable (%s)", exc)
            self.fallback.hit(key)
            return
        if int(wait_ms) >= 0:
            raise RateLimited(retry_after=max(1, math.ceil(int(wait_ms) / 1000)))


async def enforce(limiter: Any, key: str) -> None:
    """Count a hit on either kind of limiter (the in-process one answers at once)."""
    outcome = limiter.hit(key)
    if inspect.isawaitable(outcome):
        await outcome


def limiters(settings: Settings) -> tuple[Any, Any]:
    """The request and login limiters for these settings: shared through Redis when set."""
    if settings.redis_url:
        return (
            RedisRateLimiter(settings.redis_url, settings.rate_limit_per_minute, prefix="user"),
            RedisRateLimiter(
                settings.redis_url, settings.login_attempts_per_minute, prefix="login"
            ),
        )
    return (
        RateLimiter(settings.rate_limit_per_minute),
        RateLimiter(settings.login_attempts_per_minute),
    )
