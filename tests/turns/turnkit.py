"""What the turn tests share: a chatkeep server wired to a fake OpenAI-compatible upstream, and
small helpers to send turns, read sessions and wait on conditions with a deadline.

Imported by name (``from turnkit import ...``) because tests/turns has no ``__init__.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import text

from chatkeep.settings import Settings
from chatkeep.store.engine import Database
from chatkeep.turns.generation import INTERRUPTED
from chatkeep.turns.manager import TurnManager, derived_reply_id
from support.factories import Account, new_id
from support.fake_upstream import FakeUpstream
from support.server import ServerThread
from support.sse import Event, EventStream, open_stream

T = TypeVar("T")
FAKE_MODEL = "fake-model"
DEADLINE_S = 15.0
# Absent from a request body, as opposed to an explicit null.
UNSET: Any = object()


def turn_settings(db_url: str, fake: FakeUpstream, data_dir: Path, **overrides: Any) -> Settings:
    """Like tests/conftest.py's ``settings``, but the model is the fake upstream. An override
    of ``UNSET`` leaves that setting to the environment (``CHATKEEP_*``)."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": db_url,
        "demo_model": False,
        "ollama_autodetect": False,
        "rate_limit_per_minute": 0,
        "openai_base_url": fake.base_url,
        "openai_api_key": "test",
        "default_model": FAKE_MODEL,
        "checkpoint_interval_s": 0.05,
        "lease_ttl_s": 5.0,
        "reaper_interval_s": 1.0,
        "upstream_timeout_s": 10.0,
        **overrides,
    }
    return Settings(**{name: value for name, value in values.items() if value is not UNSET})


@dataclass
class TurnStack:
    """A running server, the fake model behind it, and two accounts."""

    server: ServerThread
    fake: FakeUpstream
    alice: Account
    bob: Account
    settings: Settings
    db_url: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def turns(self) -> TurnManager:
        manager: TurnManager = self.server.app.state.turns
        return manager

    def client(self, account: Account | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = (account or self.alice).headers
        kwargs.setdefault("timeout", 30)
        return httpx.AsyncClient(base_url=self.url, headers=headers, **kwargs)

    async def db_rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Ask the database itself, past the API that could hide a row."""
        db = Database(self.db_url)
        try:
            return await db.read(
                lambda conn: [tuple(row) for row in conn.execute(text(sql), params)]
            )
        finally:
            await db.dispose()

    def stop_generations(self) -> None:
        """Stop whatever this server still generates (clean-up after a failed expectation)."""
        loop = self.server.loop
        assert loop is not None
        for gen in list(self.turns.live.values()):
            loop.call_soon_threadsafe(gen.stop, INTERRUPTED)

    def quiet(self) -> bool:
        """No generation runs in the server and no stream is open at the fake."""
        return not self.turns.busy and self.fake.stats().active == 0


def turn_body(
    content: Any,
    *,
    mid: str | None = None,
    reply_id: str | None = None,
    parent_id: Any = UNSET,
    model: str | None = None,
    session: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"id": mid or new_id(), "content": content}
    if parent_id is not UNSET:
        message["parent_id"] = parent_id
    body: dict[str, Any] = {"message": message}
    if reply_id is not None:
        body["reply_id"] = reply_id
    if model is not None:
        body["model"] = model
    if session is not None:
        body["session"] = session
    return body


def reply_id_of(body: dict[str, Any]) -> str:
    """The reply's id: the client's, or the one the server derives from the message id."""
    return str(body.get("reply_id") or derived_reply_id(body["message"]["id"]))


def turn_url(sid: str) -> str:
    return f"/api/sessions/{sid}/turns"


def stream_url(sid: str, mid: str) -> str:
    return f"/api/sessions/{sid}/messages/{mid}/stream"


@asynccontextmanager
async def open_turn(
    api: httpx.AsyncClient, sid: str, body: dict[str, Any], **kwargs: Any
) -> AsyncIterator[EventStream]:
    async with open_stream(api, "POST", turn_url(sid), json=body, **kwargs) as stream:
        yield stream


async def send_turn(
    api: httpx.AsyncClient, sid: str, body: dict[str, Any], **kwargs: Any
) -> list[Event]:
    """Send a turn and read its stream to the end."""
    async with open_turn(api, sid, body, **kwargs) as stream:
        assert stream.status_code == 200, await stream.response.aread()
        return await stream.rest()


async def new_session(api: httpx.AsyncClient, **fields: Any) -> str:
    sid = new_id()
    response = await api.put(f"/api/sessions/{sid}", json=fields)
    assert response.status_code == 201, response.text
    return sid


async def get_session(api: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await api.get(f"/api/sessions/{sid}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def all_messages(api: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    """Every branch, in seq order (incremental sync from 0)."""
    response = await api.get(f"/api/sessions/{sid}/messages", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


async def stored(api: httpx.AsyncClient, sid: str, mid: str) -> dict[str, Any]:
    found = [m for m in await all_messages(api, sid) if m["id"] == mid]
    assert len(found) == 1, f"{mid} stored {len(found)} times"
    return found[0]


def prompt_of(path: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prompt a stored path should become (G3): role and content, root first."""
    return [{"role": m["role"], "content": m["content"]} for m in path]


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = DEADLINE_S,
    what: str = "the condition",
    interval: float = 0.01,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached {what} within {timeout} s")
        await asyncio.sleep(interval)


async def wait_upstream_open(fake: FakeUpstream, count: int = 1) -> None:
    """Until the fake holds ``count`` chat streams open: the model has been called."""
    await fake.wait_for(lambda s: s.active >= count, timeout=DEADLINE_S)
