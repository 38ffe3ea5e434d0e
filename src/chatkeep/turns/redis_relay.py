"""Redis as the live relay between replicas (optional: ``CHATKEEP_REDIS_URL``, docs/deploy.md).

The replica that generates a reply publishes its text to a Redis Stream keyed by the reply id:
one entry per relayed delta, ``o`` = the text offset after it (the SSE id, SPEC 4) and ``t`` =
the text, then one closing entry (``e`` = done | error, ``d`` = its JSON). The stream is capped
(``MAXLEN ~``) and expires ``redis_stream_ttl_s`` after the reply ends.

A reader on another replica first takes the stored checkpoint (the database is the truth), then
follows the stream with ``XREAD BLOCK`` from the start of what Redis still holds, skipping what
the checkpoint already gave it, so each character is sent exactly once (G6). Whenever Redis
cannot vouch for the rest — an error, a gap (entries trimmed or never written), or a quiet
stream while the stored text moved on — ``follow`` simply returns and the caller goes on from
the stored checkpoints: losing Redis loses no text and fails no stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from pydantic_core import to_json
from redis.exceptions import RedisError

from chatkeep.turns.relay import Delta, Final, ReasoningDelta, Relay

log = logging.getLogger("chatkeep.turns")

# How long a reader waits on a quiet stream before it asks the database whether the owner is
# still writing to Redis at all (a dead owner, or one that lost Redis).
BLOCK_MS = 1000
# A stream whose owner died before finishing is not left behind for ever.
ORPHAN_TTL_S = 3600
# (stored text length, whether the reply is still in flight)
Probe = Callable[[], Awaitable[tuple[int, bool]]]


def client(url: str, *, timeout: float | None = 2.0) -> aioredis.Redis:
    """A Redis client that fails fast when Redis is gone, so nothing waits on it for long."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        protocol=2,  # XREAD answers as lists, whatever the client library's default
        socket_timeout=timeout,
        socket_connect_timeout=1.0,
        retry_on_timeout=False,
    )


def stream_key(reply_id: str) -> str:
    return f"chatkeep:reply:{reply_id}"


class RedisRelay:
    def __init__(self, url: str, *, maxlen: int, ttl_s: int) -> None:
        self.redis = client(url, timeout=(BLOCK_MS / 1000) + 2.0)
        self.maxlen = maxlen
        self.ttl_s = ttl_s

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def publish(self, reply_id: str, relay: Relay) -> None:
        """Run by the owner beside the generation: copy the relay to the stream until it ends.
        A Redis failure stops the copy of this reply only; its readers fall back (see above)."""
        key = stream_key(reply_id)
        first = True
        try:
            async for item in relay.follow(0):
                if isinstance(item, ReasoningDelta):
                    continue  # the text only: readers take reasoning from the checkpoints
                pipe = self.redis.pipeline(transaction=False)
                if isinstance(item, Delta):
                    fields: dict[Any, Any] = {"o": item.offset, "t": item.text}
                    pipe.xadd(key, fields, maxlen=self.maxlen, approximate=True)
                    if first:
                        pipe.expire(key, ORPHAN_TTL_S)
                        first = False
                else:
                    closing: dict[Any, Any] = {"e": item.event, "d": to_json(item.data).decode()}
                    pipe.xadd(key, closing, maxlen=self.maxlen, approximate=True)
                    pipe.expire(key, self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning(
                "redis relay of reply %s stopped (%s); readers use checkpoints", reply_id, exc
            )

    async def follow(
        self, reply_id: str, offset: int, probe: Probe
    ) -> AsyncIterator[Delta | Final]:
        """Deltas after ``offset`` (the text the caller already sent), then the final event.
        Returns without a final event when the caller must go on from the stored checkpoints."""
        key = stream_key(reply_id)
        last_id = "0"
        while True:
            try:
                answer: Any = await self.redis.xread({key: last_id}, count=500, block=BLOCK_MS)
            except (RedisError, OSError) as exc:
                log.warning("redis relay read of %s failed (%s); using checkpoints", reply_id, exc)
                return
            if not answer:
                stored, live = await probe()
                if stored > offset or not live:
                    return  # the owner is not (or no longer) publishing: the database knows
                continue
            for entry_id, fields in answer[0][1]:
                last_id = entry_id
                if "e" in fields:
                    yield Final(fields["e"], json.loads(fields["d"]))
                    return
                end, text = int(fields["o"]), fields["t"]
                start = end - len(text)
                if end <= offset:
                    continue  # the checkpoint already had it
                if start > offset:
                    return  # a gap: trimmed by MAXLEN or lost while Redis was away
                yield Delta(end, text[offset - start :])
                offset = end
