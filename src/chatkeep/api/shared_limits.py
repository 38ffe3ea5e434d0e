"""Rate limits that hold for the whole deployment, kept in Redis (docs/deploy.md, G8).

Without Redis, ``DatabaseLimiter`` (api/limits.py) keeps the counts in the database, which
every replica shares. With ``CHATKEEP_REDIS_URL`` set, every replica counts in one Redis sorted
set per key instead, sparing the database a write per request: a sliding window, checked and
recorded in one Lua script (atomic in Redis) on Redis's own clock, so the replicas' clocks do
not matter.

``RedisLimiter`` has the two methods of the ``Limiter`` interface of the database-backed limits
(issue 11: ``hit``/``check`` with ``limit`` and ``window_s``), so it replaces ``DatabaseLimiter``
where Redis is configured and takes it as its ``fallback``. If Redis is unreachable, the
fallback counts instead (the database, or this process): the limit stays a guard rather than
failing every request while Redis is away.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque

from redis.exceptions import RedisError

from chatkeep.api.limits import DatabaseLimiter, Limiter
from chatkeep.problems import RateLimited
from chatkeep.settings import Settings
from chatkeep.store.engine import Database
from chatkeep.turns import redis_relay

log = logging.getLogger("chatkeep.api")

# KEYS[1]: the key's sorted set; ARGV: window (ms), limit, a unique member, 1 = count this hit.
# Returns -1 when within the limit, else the milliseconds until the oldest hit leaves the window.
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
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
end
return -1
"""


class LocalLimiter:
    """The same interface in this process only: the last resort when Redis is away and no
    other fallback was given (a sliding window per key, as in the Lua script)."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, key: str, *, limit: int, window_s: int = 60) -> None:
        if limit <= 0:
            return
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - window_s:
            hits.popleft()
        if len(hits) >= limit:
            raise RateLimited(retry_after=max(1, math.ceil(hits[0] + window_s - now)))
        hits.append(now)

    async def check(self, key: str, *, limit: int, window_s: int = 60) -> None:
        # The in-process window cannot look without counting; a check is never refused here.
        return None


class RedisLimiter:
    """``limit`` hits per key per sliding ``window_s``, across every replica."""

    def __init__(self, url: str, *, fallback: Limiter | None = None) -> None:
        self.redis = redis_relay.client(url)
        self._script = self.redis.register_script(_SLIDING_WINDOW)
        self.fallback: Limiter = fallback or LocalLimiter()
        self._warned_at = -1e9

    async def hit(self, key: str, *, limit: int, window_s: int = 60) -> None:
        await self._run(key, limit, window_s, count=True)

    async def check(self, key: str, *, limit: int, window_s: int = 60) -> None:
        await self._run(key, limit, window_s, count=False)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def _run(self, key: str, limit: int, window_s: int, *, count: bool) -> None:
        if limit <= 0:
            return
        try:
            wait_ms = await self._script(
                keys=[f"chatkeep:rate:{key}"],
                args=[window_s * 1000, limit, uuid.uuid4().hex, "1" if count else "0"],
            )
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at > 10:  # once per 10 s, not once per request
                self._warned_at = now
                log.warning("rate limits counted without redis: unavailable (%s)", exc)
            if count:
                await self.fallback.hit(key, limit=limit, window_s=window_s)
            else:
                await self.fallback.check(key, limit=limit, window_s=window_s)
            return
        if int(wait_ms) >= 0:
            raise RateLimited(retry_after=max(1, math.ceil(int(wait_ms) / 1000)))


def deployment_limiter(settings: Settings, db: Database) -> Limiter:
    """The limiter every request and sign-in counts on: Redis for the whole deployment when it
    is configured, with the database as its fallback; else the database alone (G8)."""
    database = DatabaseLimiter(db)
    if settings.redis_url:
        return RedisLimiter(settings.redis_url, fallback=database)
    return database
