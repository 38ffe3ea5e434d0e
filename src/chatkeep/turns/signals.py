"""Cancel and delete, carried to the replica that owns a generation through Redis pub/sub.

The database is still what decides (G5): a cancel or a delete is committed first and only then
announced here, so the owner stops at once instead of at its next checkpoint (at most 250 ms
later, G2). A lost announcement costs only that delay: the checkpoint finds the row changed and
stops the generation all the same. Without Redis this module is not used at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from chatkeep.turns import redis_relay

log = logging.getLogger("chatkeep.turns")
CHANNEL = "chatkeep:signals"


class Signals:
    def __init__(
        self,
        url: str,
        *,
        on_cancel: Callable[[str], None],
        on_delete: Callable[[int], None],
    ) -> None:
        self.url = url
        self.on_cancel = on_cancel
        self.on_delete = on_delete
        self.redis = redis_relay.client(url)
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="chatkeep-signals")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.redis.aclose()

    async def cancelled(self, reply_id: str) -> None:
        await self._publish({"cancel": reply_id})

    async def deleted(self, session_pk: int) -> None:
        await self._publish({"delete": session_pk})

    async def _publish(self, message: dict[str, Any]) -> None:
        try:
            await self.redis.publish(CHANNEL, json.dumps(message))
        except (RedisError, OSError) as exc:
            log.warning("could not announce %s through redis (%s); checkpoints will", message, exc)

    async def _listen_forever(self) -> None:
        while True:
            # Its own connection with no read timeout: a subscription is quiet most of the time.
            listener = redis_relay.client(self.url, timeout=None)
            try:
                async with listener.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._dispatch(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("redis signals lost (%s); reconnecting", exc)
            finally:
                self.subscribed.clear()
                await listener.aclose()
            await asyncio.sleep(1.0)

    def _dispatch(self, data: str) -> None:
        try:
            message = json.loads(data)
            if "cancel" in message:
                self.on_cancel(str(message["cancel"]))
            elif "delete" in message:
                self.on_delete(int(message["delete"]))
        except (ValueError, TypeError):
            log.warning("ignored a malformed signal %r", data[:200])
