"""Reading chatkeep's event streams (SPEC 4) over real HTTP, the way a client does.

A small hand-written parser over an httpx streaming response, so a test sees exactly what went
over the wire: ``event:``, ``id:`` and ``data:`` fields, comment lines (``: ping``) skipped, one
event per blank line. A fetch-based client must send ``Last-Event-ID`` itself when it resumes
(SPEC 9), so ``open_stream`` takes it as an argument.

    async with open_stream(api, "POST", f"/api/sessions/{sid}/turns", json=body) as stream:
        assert stream.status_code == 200
        start = await stream.until("start")
        rest = await stream.rest()
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

# Generous: a deadline that only a hung stream reaches, never a slow but healthy one.
DEFAULT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class StreamClosed(AssertionError):
    """The stream ended before the event a test waited for."""


class EventStream:
    """The events of one response, read on demand with a deadline each."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.seen: list[Event] = []
        self._events = self._parse()
        self.closed = False

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def is_event_stream(self) -> bool:
        content_type: str = self.response.headers.get("content-type", "")
        return content_type.startswith("text/event-stream")

    async def problem(self) -> dict[str, Any]:
        """The problem+json body of a response that is not a stream (SPEC 4: 404, 409, 422)."""
        assert not self.is_event_stream, f"expected a problem, got a stream ({self.status_code})"
        assert self.response.headers["content-type"].startswith("application/problem+json")
        body: dict[str, Any] = json.loads(await self.response.aread())
        return body

    async def _parse(self) -> AsyncIterator[Event]:
        data: list[str] = []
        name, event_id = "message", None
        async for line in self.response.aiter_lines():
            if not line:
                if data:
                    yield Event(name, "\n".join(data), event_id)
                name, data, event_id = "message", [], None
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
        if data:
            yield Event(name, "\n".join(data), event_id)

    async def next(self, timeout: float = DEFAULT_TIMEOUT_S) -> Event:
        """The next event; ``StreamClosed`` if the stream ends first."""
        assert self.is_event_stream, f"not a stream: {self.status_code} {self.response.headers}"
        try:
            found = await asyncio.wait_for(anext(self._events), timeout)
        except StopAsyncIteration:
            self.closed = True
            raise StreamClosed(f"the stream ended after {names(self.seen)}") from None
        except TimeoutError:
            raise AssertionError(f"no event within {timeout} s after {names(self.seen)}") from None
        self.seen.append(found)
        return found

    async def until(self, name: str, timeout: float = DEFAULT_TIMEOUT_S) -> Event:
        """Read up to and including the next event called ``name``."""
        while True:
            found = await self.next(timeout)
            if found.event == name:
                return found

    async def rest(self, timeout: float = DEFAULT_TIMEOUT_S) -> list[Event]:
        """Every event up to the end of the stream (which a finished reply closes)."""
        start = len(self.seen)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.next(max(0.0, deadline - loop.time()))
            except StreamClosed:
                return self.seen[start:]


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json: Any = None,
    last_event_id: str | None = None,
    params: dict[str, Any] | None = None,
    timeout: httpx.Timeout | float | None = None,
) -> AsyncIterator[EventStream]:
    """Open a request whose answer is a stream (or a problem); leaving the block hangs up."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    async with client.stream(
        method, url, json=json, headers=headers, params=params, **extra
    ) as response:
        yield EventStream(response)


def names(events: Iterable[Event]) -> list[str]:
    return [e.event for e in events]


def delta_text(events: Iterable[Event]) -> str:
    """The reply text that a list of events carried."""
    return "".join(e.json["text"] for e in events if e.event == "delta")


def check_delta_ids(events: Iterable[Event], reply_id: str, start: int = 0) -> None:
    """Every ``delta`` is ``<reply_id>:<offset>`` with offset = characters so far (SPEC 4)."""
    offset = start
    for e in events:
        if e.event != "delta":
            continue
        offset += len(e.json["text"])
        assert e.id == f"{reply_id}:{offset}", (e.id, offset)
