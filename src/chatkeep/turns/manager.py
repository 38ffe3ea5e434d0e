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
from typing import Any

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
from chatkeep.turns.relay import Delta
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


def parse_last_event_id(value: str | None, reply_id: str) -> int | None:
    """``<reply_id>:<offset>`` -> offset, for this reply only."""
    if not value:
        return None
    rid, _, offset = value.rpartition(":")
    if rid != reply_id or not offset.isdigit():
        return None
    return int(offset)


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

    async def start(self) -> None:
        self.writer.start()
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
            return model_id

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
        one in another process stops at its next checkpoint, which finds its row gone."""
        for gen in list(self.live.values()):
            if gen.turn.session_pk == session_pk:
                gen.stop(SESSION_DELETED)

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
        # Another process owns it: it stops at its next tick and writes its last text; answer
        # with that text, not with the older checkpoint.
        deadline = asyncio.get_running_loop().time() + self.settings.lease_ttl_s
        while True:
            row = await self.db.read(replies.reply_state, row.pk) or row
            if not replies.in_flight(row) or asyncio.get_running_loop().time() > deadline:
                return message_public(row, session_id)
            await asyncio.sleep(self.settings.checkpoint_interval_s)

    async def follow(
        self, *, reply_pk: int, reply_id: str, session_id: str, offset: int
    ) -> AsyncIterator[bytes]:
        """``delta`` events from ``offset``, then ``done`` or ``error`` (G6): from the live
        relay when this process generates the reply, else from its stored checkpoints."""
        gen = self.live.get(reply_id)
        if gen is not None:
            async for item in gen.relay.follow(offset):
                if isinstance(item, Delta):
                    yield event("delta", {"text": item.text}, f"{reply_id}:{item.offset}")
                else:
                    yield event(item.event, item.data)
            return
        async for sse in self._follow_stored(reply_pk, reply_id, session_id, offset):
            yield sse

    async def _follow_stored(
        self, reply_pk: int, reply_id: str, session_id: str, offset: int
    ) -> AsyncIterator[bytes]:
        while True:
            row = await self.db.read(replies.reply_state, reply_pk)
            if row is None:
                yield event(
                    "error",
                    {"code": SESSION_DELETED, "message": "Session was deleted", "reply": None},
                )
                return
            text = row.content if isinstance(row.content, str) else ""
            if len(text) > offset:
                yield event("delta", {"text": text[offset:]}, f"{reply_id}:{len(text)}")
                offset = len(text)
            if not replies.in_flight(row):
                yield final_event(message_public(row, session_id))
                return
            await asyncio.sleep(self.settings.checkpoint_interval_s)


def final_event(reply: dict[str, Any]) -> bytes:
    """The closing event for a reply that is already finished."""
    if reply["status"] == "complete":
        return event("done", reply)
    error = reply.get("error") or {}
    code = error.get("code") or reply["status"]
    message = error.get("message") or {"cancelled": "Stopped"}.get(code, f"The reply {code}")
    return event("error", {"code": code, "message": message, "reply": reply})
