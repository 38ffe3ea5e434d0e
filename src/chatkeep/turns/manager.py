"""``TurnManager``: this process's generations, its checkpoint writer and lease, the reaper,
and the event streams that clients attach to (SPEC 4)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from pydantic_core import to_json
from sqlalchemy import Connection

from chatkeep.problems import Invalid
from chatkeep.providers.registry import Providers, UnknownModel
from chatkeep.settings import Settings
from chatkeep.store import content, replies
from chatkeep.store.content import NewBlob
from chatkeep.store.engine import Database
from chatkeep.store.messages import NewMessage, message_public
from chatkeep.store.replies import Turn
from chatkeep.turns import generation
from chatkeep.turns.context import build_prompt
from chatkeep.turns.generation import CANCELLED, INTERRUPTED, SESSION_DELETED, Generation
from chatkeep.turns.redis_relay import RedisRelay
from chatkeep.turns.relay import Delta, Final, ReasoningDelta
from chatkeep.turns.signals import Signals
from chatkeep.turns.titles import improve_title
from chatkeep.turns.writer import CheckpointWriter

log = logging.getLogger("chatkeep.turns")
_REPLY_NAMESPACE = uuid.UUID("6f1d6a63-8b0e-4f43-9d55-2a3c5e0b7c11")


def derived_reply_id(message_id: str) -> str:
    """The reply id a client gets when it names none: the same for every retry of the turn."""
    return str(uuid.uuid5(_REPLY_NAMESPACE, message_id))


def event(name: str, data: Any, event_id: str | None = None) -> bytes:
    """One server-sent event, encoded once, as the bytes that go on the wire (issue 6: no event
    object, regular expression and buffer per token). The same lines, in the same order, as
    sse-starlette writes: ``id``, ``event``, ``data``, CRLF-separated. Names and ids never hold
    a newline and JSON escapes its own, so no field needs splitting."""
    try:
        payload = orjson.dumps(data, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits in a reply's usage
        payload = to_json(data)
    head = b"event: " + name.encode() + b"\r\ndata: "
    if event_id is not None:
        head = b"id: " + event_id.encode() + b"\r\n" + head
    return head + payload + b"\r\n\r\n"


class Resume(NamedTuple):
    """Where a client left off: characters of text and of reasoning it has (G6)."""

    text: int
    reasoning: int = 0


def event_id(reply_id: str, text: int, reasoning: int = 0) -> str:
    """``<reply_id>:<offset>`` (SPEC 4), or ``<reply_id>:r<reasoning>:<offset>`` once the reply
    has reasoning: the text offset stays last, where clients that know nothing of reasoning
    read it, and one id resumes both exactly (issue 8, item 4)."""
    if reasoning:
        return f"{reply_id}:r{reasoning}:{text}"
    return f"{reply_id}:{text}"


def parse_last_event_id(value: str | None, reply_id: str) -> Resume | None:
    """An id made by ``event_id`` -> its offsets, for this reply only. An id without the
    reasoning part (older clients) resumes the text; the reasoning is sent again from 0."""
    if not value:
        return None
    rid, _, rest = value.partition(":")
    parts = rest.split(":")
    if rid != reply_id or not parts[-1].isdigit() or len(parts) > 2:
        return None
    reasoning = parts[0][1:] if len(parts) == 2 else "0"
    if len(parts) == 2 and (not parts[0].startswith("r") or not reasoning.isdigit()):
        return None
    return Resume(int(parts[-1]), int(reasoning))


@dataclass
class Started:
    turn: Turn
    generation: Generation | None


class TurnManager:
    def __init__(self, db: Database, providers: Providers, settings: Settings) -> None:
        self.db = db
        self.providers = providers
        self.settings = settings
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.writer = CheckpointWriter(
            db,
            self.owner,
            interval_s=settings.checkpoint_interval_s,
            lease_ttl_s=settings.lease_ttl_s,
        )
        self.live: dict[str, Generation] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Scale-out (docs/deploy.md): live text and cancel/delete between replicas via Redis.
        self.redis: RedisRelay | None = None
        self.signals: Signals | None = None
        if settings.redis_url:
            self.redis = RedisRelay(
                settings.redis_url,
                maxlen=settings.redis_stream_maxlen,
                ttl_s=settings.redis_stream_ttl_s,
            )
            self.signals = Signals(
                settings.redis_url, on_cancel=self._stop_local, on_delete=self._stop_session
            )

    async def start(self) -> None:
        self.writer.start()
        if self.signals is not None:
            self.signals.start()
        await self.reap()  # replies a crashed process left streaming (G2)
        self._reaper = asyncio.create_task(self._reap_forever(), name="chatkeep-reaper")

    async def stop(self) -> None:
        """Graceful shutdown: live replies end as ``interrupted`` with the text they have."""
        if self._reaper is not None:
            self._reaper.cancel()
        for gen in list(self.live.values()):
            gen.stop(INTERRUPTED)
        tasks = [g.task for g in self.live.values() if g.task is not None]
        tasks += list(self._background)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self.writer.stop()
        if self.signals is not None:
            await self.signals.stop()
        if self.redis is not None:
            await self.redis.aclose()

    async def reap(self) -> int:
        count = await self.db.write(replies.reap_expired)
        if count:
            log.warning("marked %d orphaned replies interrupted", count)
        return count

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reaper_interval_s)
            try:
                await self.reap()
            except Exception:
                log.exception("reaper failed; will retry")

    async def start_turn(
        self,
        *,
        user_pk: int,
        session_id: str,
        user_msg: NewMessage,
        reply_id: str,
        model: str | None,
        session_fields: dict[str, Any] | None,
        blobs: list[NewBlob] = (),  # type: ignore[assignment]
    ) -> Started:
        """Commit the user message and the empty reply, then (if new) start generating."""
        resolved: dict[str, Any] = {}

        def choose_model(session_model: str | None) -> str:
            wanted = model or session_model or (session_fields or {}).get("model")
            provider, model_id = self.providers.resolve(wanted)
            resolved.update(provider=provider, model=model_id)
            # Stored as listed (provider:model with several providers), so it keeps its provider.
            return self.providers.public_id(provider.name, model_id)

        def work(conn: Connection) -> tuple[Turn, list[dict[str, Any]] | None]:
            if blobs:
                content.put_blobs(conn, user_pk, list(blobs))
                content.check_blob_refs(conn, user_pk, user_msg.content)
            turn = replies.start_turn(
                conn,
                user_pk=user_pk,
                session_id=session_id,
                user_msg=user_msg,
                reply_id=reply_id,
                choose_model=choose_model,
                owner=self.owner,
                lease_ttl_s=self.settings.lease_ttl_s,
                session_fields=session_fields,
                max_generations=self.settings.max_concurrent_generations_per_user,
            )
            if not turn.created or turn.session_row is None:
                return turn, None
            return turn, build_prompt(conn, turn.session_row, user_msg.id)

        try:
            turn, prompt = await self.db.write(work)
        except UnknownModel:
            # The listing may predate the model server coming up (SPEC 7): list again, once.
            await self.providers.list_models()
            try:
                turn, prompt = await self.db.write(work)
            except UnknownModel as exc:
                raise Invalid(f"unknown model {exc.model_id!r}", field="model") from exc
        if prompt is None:
            return Started(turn, self.live.get(str(turn.reply["id"])))
        gen = Generation(turn, resolved["provider"], resolved["model"], prompt)
        self._launch(gen)
        return Started(turn, gen)

    def _launch(self, gen: Generation) -> None:
        self.live[gen.reply_id] = gen

        async def main() -> None:
            try:
                await generation.run(gen, self.writer, lambda: self._in_background(self._lost(gen)))
            finally:
                self.live.pop(gen.reply_id, None)
            final = gen.relay.final
            first_turn = gen.turn.user_message["seq"] == 1
            if self.settings.title_from_model and first_turn and final and final.event == "done":
                self._in_background(
                    improve_title(
                        self.db,
                        gen.provider,
                        gen.model,
                        session_pk=gen.turn.session_pk,
                        first_message=gen.turn.user_message["content"],
                        reply=gen.relay.text,
                    )
                )

        gen.task = asyncio.create_task(main(), name=f"generation-{gen.reply_id}")
        if self.redis is not None:
            self._in_background(self.redis.publish(gen.reply_id, gen.relay))

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def busy(self) -> bool:
        """Whether anything of this process's turns still runs (tests wait on this)."""
        return bool(self.live or self._background)

    async def _lost(self, gen: Generation) -> None:
        """Our reply was changed by someone else: find out what happened, then stop."""
        row = await self.db.read(replies.reply_state, gen.turn.reply_pk)
        if row is None:
            gen.stop(SESSION_DELETED)
        elif row.status == CANCELLED:
            gen.stop(CANCELLED)
        else:
            gen.stop(INTERRUPTED)

    async def on_session_deleted(self, session_pk: int) -> None:
        """Delete wins (G5): a generation of that session in this process stops at once;
        one in another process stops at its next checkpoint, which finds its row gone, or at
        once when Redis carries the news."""
        self._stop_session(session_pk)
        if self.signals is not None:
            await self.signals.deleted(session_pk)

    def _stop_session(self, session_pk: int) -> None:
        for gen in list(self.live.values()):
            if gen.turn.session_pk == session_pk:
                gen.stop(SESSION_DELETED)

    def _stop_local(self, reply_id: str) -> None:
        """A cancel committed by another replica (announced through Redis)."""
        gen = self.live.get(reply_id)
        if gen is not None:
            gen.stop(CANCELLED)

    async def cancel(self, *, user_pk: int, session_id: str, reply_id: str) -> dict[str, Any]:
        def work(conn: Connection) -> Any:
            return replies.cancel_reply(
                conn, user_pk=user_pk, session_id=session_id, reply_id=reply_id
            )

        row = await self.db.write(work)
        gen = self.live.get(reply_id)
        if gen is not None and gen.task is not None:
            gen.stop(CANCELLED)
            await asyncio.wait([gen.task], timeout=10)
        elif replies.in_flight(row) and self.signals is not None:
            await self.signals.cancelled(reply_id)
        # Another process owns it: it stops at its next tick and writes its last text; answer
        # with that text, not with the older checkpoint.
        deadline = asyncio.get_running_loop().time() + self.settings.lease_ttl_s
        while True:
            row = await self.db.read(replies.reply_state, row.pk) or row
            if not replies.in_flight(row) or asyncio.get_running_loop().time() > deadline:
                return message_public(row, session_id)
            await asyncio.sleep(self.settings.checkpoint_interval_s)

    async def follow(
        self, *, reply_pk: int, reply_id: str, session_id: str, offset: int, reasoning: int = 0
    ) -> AsyncIterator[bytes]:
        """``reasoning`` and ``delta`` events from the offsets, then ``done`` or ``error``
        (G6): from the live relay when this process generates the reply, else from its stored
        checkpoints."""
        gen = self.live.get(reply_id)
        if gen is not None:
            async for item in gen.relay.follow(offset, reasoning):
                if isinstance(item, Delta):
                    eid = event_id(reply_id, item.offset, item.reasoning_offset)
                    yield event("delta", {"text": item.text}, eid)
                elif isinstance(item, ReasoningDelta):
                    eid = event_id(reply_id, item.text_offset, item.offset)
                    yield event("reasoning", {"text": item.text}, eid)
                else:
                    yield event(item.event, item.data)
            return
        if self.redis is not None:
            async for sse in self._follow_redis(
                self.redis, reply_pk, reply_id, session_id, offset, reasoning
            ):
                yield sse
            return
        async for sse in self._follow_stored(reply_pk, reply_id, session_id, offset, reasoning):
            yield sse

    async def _follow_redis(
        self,
        redis: RedisRelay,
        reply_pk: int,
        reply_id: str,
        session_id: str,
        offset: int,
        reasoning: int,
    ) -> AsyncIterator[bytes]:
        """Another replica generates it: the stored checkpoint first, then the owner's Redis
        stream, and the stored checkpoints again whenever Redis cannot vouch for the rest.
        Redis carries the text only: reasoning comes from the checkpoints (here at the start,
        and whole in the final reply), so its offset in the ids stays the stored one."""
        row = await self.db.read(replies.reply_state, reply_pk)
        if row is not None and replies.in_flight(row):
            text = row.content if isinstance(row.content, str) else ""
            thought = row.reasoning or ""
            if len(thought) > reasoning:
                eid = event_id(reply_id, offset, len(thought))
                yield event("reasoning", {"text": thought[reasoning:]}, eid)
                reasoning = len(thought)
            if len(text) > offset:
                eid = event_id(reply_id, len(text), reasoning)
                yield event("delta", {"text": text[offset:]}, eid)
                offset = len(text)

            async def probe() -> tuple[int, bool]:
                now = await self.db.read(replies.reply_state, reply_pk)
                if now is None:
                    return 0, False
                stored = now.content if isinstance(now.content, str) else ""
                return len(stored), replies.in_flight(now)

            async for item in redis.follow(reply_id, offset, probe):
                if isinstance(item, Final):
                    yield event(item.event, item.data)
                    return
                yield event(
                    "delta", {"text": item.text}, event_id(reply_id, item.offset, reasoning)
                )
                offset = item.offset
        async for sse in self._follow_stored(reply_pk, reply_id, session_id, offset, reasoning):
            yield sse

    async def _follow_stored(
        self, reply_pk: int, reply_id: str, session_id: str, offset: int, reasoning: int
    ) -> AsyncIterator[bytes]:
        while True:
            row = await self.db.read(replies.reply_state, reply_pk)
            if row is None:
                yield event(
                    "error",
                    {"code": SESSION_DELETED, "message": "Session was deleted", "reply": None},
                )
                return
            for sse in stored_deltas(message_public(row, session_id), offset, reasoning):
                yield sse
            stored = stored_offsets(message_public(row, session_id))
            offset, reasoning = max(offset, stored.text), max(reasoning, stored.reasoning)
            if not replies.in_flight(row):
                yield final_event(message_public(row, session_id))
                return
            await asyncio.sleep(self.settings.checkpoint_interval_s)


def stored_offsets(reply: dict[str, Any]) -> Resume:
    text = reply["content"] if isinstance(reply["content"], str) else ""
    return Resume(len(text), len(reply.get("reasoning") or ""))


def stored_deltas(reply: dict[str, Any], offset: int, reasoning: int) -> list[bytes]:
    """The events that bring a client from its offsets to a stored reply's text and reasoning."""
    text = reply["content"] if isinstance(reply["content"], str) else ""
    thought = reply.get("reasoning") or ""
    found: list[bytes] = []
    if len(thought) > reasoning:
        eid = event_id(reply["id"], offset, len(thought))
        found.append(event("reasoning", {"text": thought[reasoning:]}, eid))
    if len(text) > offset:
        eid = event_id(reply["id"], len(text), max(reasoning, len(thought)))
        found.append(event("delta", {"text": text[offset:]}, eid))
    return found


def final_event(reply: dict[str, Any]) -> bytes:
    """The closing event for a reply that is already finished."""
    if reply["status"] == "complete":
        return event("done", reply)
    error = reply.get("error") or {}
    code = error.get("code") or reply["status"]
    message = error.get("message") or {"cancelled": "Stopped"}.get(code, f"The reply {code}")
    return event("error", {"code": code, "message": message, "reply": reply})
