"""``CheckpointWriter``: every live reply of this process is saved by one group commit per tick.

This is what the source report's "message batcher" should have been (ISSUE 4, TC-5.x): one
transaction per tick (at most every 250 ms, G2) for all streams together, so database writes per
second are bounded by the tick, not by the number of tokens or streams; a failed tick is retried
by ``Database.write`` and, if it still fails, kept for the next tick — never dropped. A final
state (``finish``) rides the next tick too, and its caller waits until it is committed, so a
``done`` event is only sent for a reply that is already durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Row, update

from chatkeep import metrics
from chatkeep.store import replies
from chatkeep.store.engine import Database
from chatkeep.store.tables import Message, table, utcnow

log = logging.getLogger("chatkeep.turns")
M = table(Message)


@dataclass
class _Tracked:
    text: Callable[[], str]
    on_lost: Callable[[], None]
    dirty: bool = False


@dataclass
class _Finish:
    content: str
    status: str
    error: dict[str, Any] | None
    usage: dict[str, Any] | None
    done: asyncio.Future[Row[Any] | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CheckpointWriter:
    def __init__(
        self, db: Database, owner: str, *, interval_s: float = 0.25, lease_ttl_s: float = 10.0
    ) -> None:
        self.db = db
        self.owner = owner
        self.interval_s = interval_s
        self.lease_ttl_s = lease_ttl_s
        self._tracked: dict[int, _Tracked] = {}
        self._finishing: dict[int, _Finish] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_renewal = 0.0
        self.ticks = 0

    def track(self, reply_pk: int, text: Callable[[], str], on_lost: Callable[[], None]) -> None:
        self._tracked[reply_pk] = _Tracked(text, on_lost)

    def untrack(self, reply_pk: int) -> None:
        self._tracked.pop(reply_pk, None)

    def mark_dirty(self, reply_pk: int) -> None:
        tracked = self._tracked.get(reply_pk)
        if tracked is not None:
            tracked.dirty = True

    async def finish(
        self,
        reply_pk: int,
        *,
        content: str,
        status: str,
        error: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> Row[Any] | None:
        """Queue the reply's final state and wait until a tick has committed it."""
        self._tracked.pop(reply_pk, None)
        request = _Finish(content, status, error, usage)
        self._finishing[reply_pk] = request
        self._wake.set()  # a finish does not wait for the next tick
        return await asyncio.shield(request.done)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chatkeep-checkpoint-writer")

    async def stop(self) -> None:
        """Flush what is pending, then stop."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        if self._tracked or self._finishing:
            await self._tick()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._tick()
            except Exception:  # kept pending; the next tick tries again
                log.exception("checkpoint tick failed; will retry")
                metrics.SAVE_FAILURES.inc()

    async def _tick(self) -> None:
        # A reply with no new text (the model has not sent its first token) is not checkpointed,
        # so ask whether it is still ours: deleted or cancelled by another process (G5).
        idle = [pk for pk, t in self._tracked.items() if not t.dirty]
        if idle:
            lost_idle = await self.db.read(replies.not_owned, self.owner, idle)
            for pk in lost_idle:
                lost_one = self._tracked.pop(pk, None)
                if lost_one is not None:
                    lost_one.on_lost()
        dirty = {pk: t for pk, t in self._tracked.items() if t.dirty}
        finishing = dict(self._finishing)
        now = asyncio.get_running_loop().time()
        renew = bool(self._tracked) and now - self._last_renewal > self.lease_ttl_s / 3
        if not dirty and not finishing and not renew:
            return
        for tracked in dirty.values():
            tracked.dirty = False
        checkpoints = [replies.Checkpoint(pk, t.text()) for pk, t in dirty.items()]
        lease_until = utcnow() + timedelta(seconds=self.lease_ttl_s)

        def work(conn: Connection) -> tuple[set[int], dict[int, Row[Any] | None]]:
            lost = replies.checkpoint_many(conn, self.owner, checkpoints, lease_until)
            if renew:
                conn.execute(
                    update(M)
                    .where(M.c.lease_owner == self.owner, M.c.status == "streaming")
                    .values(lease_expires_at=lease_until)
                )
            finished = {}
            for pk, f in finishing.items():
                finished[pk] = replies.finish_reply(
                    conn,
                    reply_pk=pk,
                    owner=self.owner,
                    content=f.content,
                    status=f.status,
                    error=f.error,
                    usage=f.usage,
                )
            return lost, finished

        try:
            lost, finished = await self.db.write(work)
        except BaseException:
            for tracked in dirty.values():
                tracked.dirty = True
            raise
        self.ticks += 1
        if renew:
            self._last_renewal = now
        for pk, row in finished.items():
            request = self._finishing.pop(pk)
            if not request.done.done():
                request.done.set_result(row)
        for pk in lost:
            lost_one = self._tracked.pop(pk, None)
            if lost_one is not None:
                lost_one.on_lost()
