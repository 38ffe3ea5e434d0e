"""One generation: stream from the provider into the relay and the checkpoint writer, then
finish the reply exactly once as complete, error, cancelled or interrupted (G2).

It runs as its own task, detached from the request that started it: a client that disconnects
does not stop it, the reply finishes and is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatkeep import metrics
from chatkeep.providers.base import Provider, ProviderError
from chatkeep.store import replies
from chatkeep.store.messages import message_public
from chatkeep.store.replies import Turn
from chatkeep.turns.relay import Final, Relay
from chatkeep.turns.writer import CheckpointWriter

log = logging.getLogger("chatkeep.turns")

# Why a generation stopped early; each ends the stream with an ``error`` event of this code.
CANCELLED, SESSION_DELETED, INTERRUPTED = "cancelled", "session_deleted", "interrupted"


@dataclass
class Thinking:
    """How long the model thought: from its first reasoning to its first answer text, shown
    as "Thought for 12 s" (issue 8, item 4)."""

    started: float | None = None
    ended: float | None = None

    def add(self, reasoning: str) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def answer_started(self) -> None:
        if self.started is not None and self.ended is None:
            self.ended = time.perf_counter()

    @property
    def ms(self) -> int | None:
        if self.started is None:
            return None
        return round(((self.ended or time.perf_counter()) - self.started) * 1000)


@dataclass
class Generation:
    turn: Turn
    provider: Provider
    model: str
    prompt: list[dict[str, Any]]
    relay: Relay = field(default_factory=Relay)
    stop_reason: str | None = None
    task: asyncio.Task[None] | None = None
    # Once the upstream is done, the final write must not be cancelled half-way.
    finishing: bool = False
    started_at: float = field(default_factory=time.perf_counter)
    thinking: Thinking = field(default_factory=lambda: Thinking())

    @property
    def reply_id(self) -> str:
        return str(self.turn.reply["id"])

    def stop(self, reason: str) -> None:
        """Stop the upstream request now; the task then writes what it has."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.task is not None and not self.task.done() and not self.finishing:
            self.task.cancel()

    def thought(self) -> dict[str, Any]:
        """The reply's reasoning fields as stored: none unless the model reasoned."""
        reasoning = self.relay.reasoning
        return {"reasoning": reasoning or None, "reasoning_ms": self.thinking.ms}

    def _reply(self, **changes: Any) -> dict[str, Any]:
        return {**self.turn.reply, "content": self.relay.text, **self.thought(), **changes}


async def run(gen: Generation, writer: CheckpointWriter, on_lost: Callable[[], None]) -> None:
    """``on_lost`` is called when the reply stops being ours to write (cancelled or deleted in
    another process, or reaped); it finds out which and calls ``gen.stop``."""
    pk = gen.turn.reply_pk
    writer.track(pk, lambda: gen.relay.text, on_lost, reasoning=lambda: gen.relay.reasoning)
    usage: dict[str, Any] | None = None
    try:
        first = True
        async for chunk in gen.provider.stream_chat(model=gen.model, messages=gen.prompt):
            if chunk.text or chunk.reasoning:
                if first:
                    metrics.TTFT_SECONDS.observe(time.perf_counter() - gen.started_at)
                    first = False
                if chunk.reasoning:
                    gen.thinking.add(chunk.reasoning)
                    gen.relay.append_reasoning(chunk.reasoning)
                if chunk.text:
                    gen.thinking.answer_started()
                    gen.relay.append(chunk.text)
                writer.mark_dirty(pk)
            usage = chunk.usage or usage
    except asyncio.CancelledError:
        gen.finishing = True
        await _finish_stopped(gen, writer)
        return
    except ProviderError as exc:
        error = {"code": exc.code, "message": exc.message}
    except Exception:
        log.exception("generation %s failed", gen.reply_id)
        error = {"code": "internal_error", "message": "the reply could not be generated"}
    else:
        gen.finishing = True
        row = await writer.finish(
            pk, content=gen.relay.text, status="complete", usage=usage, **gen.thought()
        )
        if row is None:
            await _close_lost(gen, writer)
            return
        _close(gen, "complete", row, None)
        return
    gen.finishing = True
    row = await writer.finish(
        pk, content=gen.relay.text, status="error", error=error, **gen.thought()
    )
    if row is None:
        await _close_lost(gen, writer)
        return
    _close(gen, "error", row, error)


async def _close_lost(gen: Generation, writer: CheckpointWriter) -> None:
    """The final write found the reply no longer ours: reaped (our lease ran out while the
    database was locked or slow) or deleted. The client is told what the store holds, never a
    ``done`` for text that was not stored (G2; found by ``make chaos``)."""
    row = await writer.db.read(replies.reply_state, gen.turn.reply_pk)
    if row is None:
        _close(gen, CANCELLED, None, {"code": SESSION_DELETED, "message": "Session was deleted"})
        return
    if row.status == "complete":
        _close(gen, "complete", row, None)
        return
    reason = row.status if row.status in (CANCELLED, INTERRUPTED, "error") else INTERRUPTED
    error = row.error or {"code": reason, "message": "The reply was interrupted"}
    _close(gen, reason, row, error)


async def _finish_stopped(gen: Generation, writer: CheckpointWriter) -> None:
    reason = gen.stop_reason or INTERRUPTED
    if reason == SESSION_DELETED:  # the row went with its session (G5)
        writer.untrack(gen.turn.reply_pk)
        _close(gen, CANCELLED, None, {"code": SESSION_DELETED, "message": "Session was deleted"})
        return
    # Cancelled keeps the text it has; interrupted (shutdown, lost lease) keeps it too.
    row = await writer.finish(
        gen.turn.reply_pk, content=gen.relay.text, status=reason, **gen.thought()
    )
    if row is None:
        await _close_lost(gen, writer)
        return
    message = "Stopped" if reason == CANCELLED else "The reply was interrupted"
    _close(gen, reason, row, {"code": reason, "message": message})


def _close(gen: Generation, status: str, row: Any, error: dict[str, Any] | None) -> None:
    metrics.GENERATIONS.labels(outcome=(error or {}).get("code", status)).inc()
    session_id = str(gen.turn.session["id"])
    reply = message_public(row, session_id) if row is not None else gen._reply(status=status)
    if error is None:
        gen.relay.close(Final("done", reply))
    else:
        gen.relay.close(Final("error", {**error, "reply": reply}))
