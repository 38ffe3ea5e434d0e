"""``turns.stream``: the events of a turn, each character of the reply exactly once, across
dropped connections (G6, SPEC 6.1).

The turn's ids are chosen before the first request (``_calls.turn_body``), so whatever happens
to a connection the client can name the reply it wants. Until the ``start`` event has arrived
the turn is sent again as it was (a replay if it had reached the server, G1); after it, the
client attaches to the reply, ``GET …/messages/{reply_id}/stream`` with ``Last-Event-ID:
<reply_id>:<offset>``, and receives only the text past its offset. Neither starts a second
generation. ``StreamState`` holds that bookkeeping once for both clients.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource

from chatkeep.client._calls import Call
from chatkeep.client._errors import (
    APIConnectionError,
    AuthenticationError,
    RateLimited,
    ServerError,
    TurnError,
)
from chatkeep.client._models import (
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    Message,
    MessageEvent,
    StartEvent,
    TurnEvent,
)

if TYPE_CHECKING:
    from chatkeep.client._async_client import AsyncClient
    from chatkeep.client._client import Client

# What a broken stream may raise; anything else (a 4xx) is an answer, not a drop.
DROPS = (APIConnectionError, RateLimited, ServerError, httpx.TransportError)


class StreamState:
    """What one turn's stream has delivered so far, and how to ask for the rest."""

    def __init__(self, session_id: str, body: dict[str, Any]) -> None:
        self.session_id = session_id
        self.body = body
        self.message_id: str = body["message"]["id"]
        self.reply_id: str = body["reply_id"]
        self.seen: set[str] = set()
        self.parts: list[str] = []
        self.offset = 0
        self.final: DoneEvent | ErrorEvent | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def next_request(self) -> tuple[Call, dict[str, str]]:
        if "start" not in self.seen:
            return Call("POST", f"/api/sessions/{self.session_id}/turns", self.body), {}
        path = f"/api/sessions/{self.session_id}/messages/{self.reply_id}/stream"
        return Call("GET", path), {"Last-Event-ID": f"{self.reply_id}:{self.offset}"}

    def accept(self, name: str, data: str, event_id: str) -> TurnEvent | None:
        """The event to hand to the caller, or None for one it has already had."""
        payload = json.loads(data) if data else {}
        if name == "delta":
            return self._delta(str(payload.get("text", "")), event_id)
        if name in ("message", "start"):
            if name in self.seen:
                return None
            self.seen.add(name)
            if name == "message":
                return MessageEvent(message=Message.model_validate(payload))
            return StartEvent(reply=Message.model_validate(payload))
        if name == "done":
            self.final = DoneEvent(reply=Message.model_validate(payload))
            return self.final
        if name == "error":
            reply = payload.get("reply")
            self.final = ErrorEvent(
                code=str(payload.get("code", "error")),
                message=str(payload.get("message", "")),
                reply=Message.model_validate(reply) if reply else None,
            )
            return self.final
        return None

    def _delta(self, text: str, event_id: str) -> DeltaEvent | None:
        _, _, tail = event_id.rpartition(":")
        end = int(tail) if tail.isdigit() else self.offset + len(text)
        if end <= self.offset:
            return None  # already delivered before a reconnect
        begin = end - len(text)
        if begin < self.offset:
            text = text[self.offset - begin :]
        self.offset = end
        self.parts.append(text)
        return DeltaEvent(text=text, offset=end)

    def final_reply(self) -> Message:
        if isinstance(self.final, DoneEvent):
            return self.final.reply
        if isinstance(self.final, ErrorEvent) and self.final.reply is not None:
            return self.final.reply
        code = self.final.code if self.final else "stream_incomplete"
        raise TurnError(code, "the turn ended without a stored reply", None)

    def raise_for_error(self) -> None:
        if isinstance(self.final, ErrorEvent):
            raise TurnError(self.final.code, self.final.message, self.final.reply)


class _Reconnects:
    """Bounds reconnecting: ``max_retries`` drops in a row without new events, and the
    deadline counted from the last progress (a long reply may stream for minutes)."""

    def __init__(self, max_retries: int, deadline: float) -> None:
        self.max_retries, self.deadline = max_retries, deadline
        self.failures = 0
        self.since = time.monotonic()

    def progress(self) -> None:
        self.failures = 0
        self.since = time.monotonic()

    def next_wait(self, exc: BaseException | None, backoff: Any) -> float:
        """Seconds to wait before reconnecting, or raise when the bounds are spent."""
        self.failures += 1
        elapsed = time.monotonic() - self.since
        if self.failures > self.max_retries or elapsed > self.deadline:
            if isinstance(exc, APIConnectionError | RateLimited | ServerError):
                raise exc
            raise APIConnectionError(f"the stream broke and did not come back: {exc}") from exc
        wait: float = backoff(self.failures, getattr(exc, "retry_after", None))
        return wait


class TurnStream:
    """Iterate for events, or ``text_deltas`` for the text; ``final_reply()`` at the end."""

    def __init__(self, client: Client, state: StreamState) -> None:
        self._client = client
        self.state = state
        self._events = self._iterate()
        self.text_deltas: Iterator[str] = (e.text for e in self if isinstance(e, DeltaEvent))

    @property
    def session_id(self) -> str:
        return self.state.session_id

    @property
    def reply_id(self) -> str:
        return self.state.reply_id

    @property
    def text(self) -> str:
        """The reply's text received so far."""
        return self.state.text

    def __iter__(self) -> Iterator[TurnEvent]:
        return self._events

    def __enter__(self) -> TurnStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._events.close()

    def final_reply(self) -> Message:
        """The reply as stored, whatever its status (reads the rest of the stream first)."""
        for _ in self._events:
            pass
        return self.state.final_reply()

    def _iterate(self) -> Generator[TurnEvent, None, None]:
        client, state = self._client, self.state
        bounds = _Reconnects(client._policy.max_retries, client._policy.deadline)
        refreshed = False
        while True:
            error: BaseException | None = None
            call, headers = state.next_request()
            try:
                with client._open_stream(call, headers) as response:
                    for sse in EventSource(response).iter_sse():
                        event = state.accept(sse.event, sse.data, sse.id)
                        if event is not None:
                            bounds.progress()
                            yield event
                        if state.final is not None:
                            return
            except AuthenticationError:
                if refreshed or not client._refresh_credentials():
                    raise
                refreshed = True
                continue
            except DROPS as exc:
                error = exc
            time.sleep(bounds.next_wait(error, client._policy.backoff))


class AsyncTurnStream:
    """The mirror of ``TurnStream``: ``async for``, ``async with``, ``await final_reply()``."""

    def __init__(self, client: AsyncClient, state: StreamState) -> None:
        self._client = client
        self.state = state
        self._events = self._iterate()
        self.text_deltas: AsyncIterator[str] = self._texts()

    @property
    def session_id(self) -> str:
        return self.state.session_id

    @property
    def reply_id(self) -> str:
        return self.state.reply_id

    @property
    def text(self) -> str:
        return self.state.text

    async def _texts(self) -> AsyncIterator[str]:
        async for event in self._events:
            if isinstance(event, DeltaEvent):
                yield event.text

    def __aiter__(self) -> AsyncIterator[TurnEvent]:
        return self._events

    async def __aenter__(self) -> AsyncTurnStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def final_reply(self) -> Message:
        async for _ in self._events:
            pass
        return self.state.final_reply()

    async def _iterate(self) -> AsyncGenerator[TurnEvent, None]:
        client, state = self._client, self.state
        bounds = _Reconnects(client._policy.max_retries, client._policy.deadline)
        refreshed = False
        while True:
            error: BaseException | None = None
            call, headers = state.next_request()
            try:
                async with client._open_stream(call, headers) as response:
                    async for sse in EventSource(response).aiter_sse():
                        event = state.accept(sse.event, sse.data, sse.id)
                        if event is not None:
                            bounds.progress()
                            yield event
                        if state.final is not None:
                            return
            except AuthenticationError:
                if refreshed or not await client._refresh_credentials():
                    raise
                refreshed = True
                continue
            except DROPS as exc:
                error = exc
            await asyncio.sleep(bounds.next_wait(error, client._policy.backoff))
