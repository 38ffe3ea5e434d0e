"""Data and servers for the benchmarks: accounts, bulk-filled sessions and messages, and a real
chatkeep server (``ServerThread``) whose own time per request is recorded.

Fills insert rows in bulk, in one transaction, shaped like the rows ``append_message`` writes
(linear conversations: contiguous ``seq``, each message the parent of the next, the session's
``last_seq`` and ``active_leaf_id`` moved on): ten thousand one-by-one fsyncs would measure the
disk, not the state the benchmark needs.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

import httpx
from sqlalchemy import Connection, insert, update
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatkeep.settings import Settings
from chatkeep.store import messages, sessions, users
from chatkeep.store.engine import Database
from chatkeep.store.hashing import request_hash
from chatkeep.store.tables import utcnow
from support.factories import make_accounts, new_id
from support.server import ServerThread

S = sessions.S
M = messages.M
# A typical chat message: a few sentences (about 400 characters).
TEXT = (
    "Could you explain how write-ahead logging keeps a database consistent after a crash? "
    "I understand that changes go to the log before the data pages, but I am not sure what "
    "happens to a transaction that was half written when the power went out, and whether "
    "a checkpoint can lose anything. A short example with two transactions would help me."
)
_CHUNK = 1000


@dataclass(frozen=True)
class BenchUser:
    name: str
    key: str
    user_pk: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def setup_users(url: str, *names: str) -> tuple[Database, dict[str, BenchUser]]:
    """Migrate the database, create each account with an API key, and open it as chatkeep does
    by default (SQLite: WAL, synchronous=FULL)."""
    accounts = await make_accounts(url, *names)
    db = Database(url)
    made = {
        name: BenchUser(name, acc.key, await db.read(users.user_pk, name))
        for name, acc in accounts.items()
    }
    return db, made


def new_message(text: str = TEXT, role: str = "user") -> messages.NewMessage:
    """A message as ``PUT /api/sessions/{sid}/messages/{id}`` builds it (no parent given: it
    continues the active path)."""
    fingerprint = request_hash(
        {
            "role": role,
            "content": text,
            "parent_id": "<active leaf>",
            "model": None,
            "status": "complete",
            "error": None,
            "usage": None,
        }
    )
    return messages.NewMessage(id=new_id(), role=role, content=text, fingerprint=fingerprint)


async def create_session(db: Database, user_pk: int, title: str) -> str:
    session_id = new_id()

    def work(conn: Connection) -> None:
        sessions.create_session_once(
            conn, user_pk=user_pk, session_id=session_id, fields={"title": title}
        )

    await db.write(work)
    return session_id


async def fill_messages(db: Database, user_pk: int, session_id: str, count: int) -> None:
    """Append ``count`` messages to the session's active path, in bulk."""

    def work(conn: Connection) -> None:
        session = sessions.live_session(conn, user_pk, session_id, for_update=True)
        parent, seq, now = session.active_leaf_id, int(session.last_seq), utcnow()
        rows: list[dict[str, Any]] = []
        for i in range(count):
            seq += 1
            message_id = new_id()
            role = "user" if i % 2 == 0 else "assistant"
            rows.append(
                {
                    "session_pk": session.pk,
                    "user_pk": user_pk,
                    "id": message_id,
                    "seq": seq,
                    "parent_id": parent,
                    "role": role,
                    "content": f"{seq}: {TEXT}",
                    "model": None if role == "user" else "demo",
                    "status": "complete",
                    "error": None,
                    "usage": None,
                    "request_hash": secrets.token_hex(32),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            parent = message_id
        for start in range(0, len(rows), _CHUNK):
            conn.execute(insert(M), rows[start : start + _CHUNK])
        conn.execute(
            update(S)
            .where(S.c.pk == session.pk)
            .values(last_seq=seq, active_leaf_id=parent, updated_at=now)
        )

    await db.write(work)


async def fill_sessions(db: Database, user_pk: int, count: int) -> None:
    """``count`` sessions with distinct ``updated_at`` (one a minute back in time), a few pinned,
    archived or deleted (tombstones), as a long-time user's sidebar holds."""

    def work(conn: Connection) -> None:
        now = utcnow()
        rows = []
        for i in range(count):
            stamp = now - timedelta(minutes=i + 1)
            rows.append(
                {
                    "user_pk": user_pk,
                    "id": new_id(),
                    "title": f"Chat {i}",
                    "model": "demo",
                    "pinned": i % 97 == 0,
                    "archived": i % 23 == 0,
                    "active_leaf_id": None,
                    "last_seq": 0,
                    "request_hash": secrets.token_hex(32),
                    "created_at": stamp,
                    "updated_at": stamp,
                    "deleted_at": stamp if i % 51 == 0 else None,
                }
            )
        for start in range(0, len(rows), _CHUNK):
            conn.execute(insert(S), rows[start : start + _CHUNK])

    await db.write(work)


async def settle(db: Database) -> None:
    """Bring the planner's statistics up to date after a bulk fill, as autovacuum would within
    a minute on a live PostgreSQL server: the benchmarks measure the steady state, not the first
    minute after an import. SQLite gets none: chatkeep never runs ANALYZE there."""
    if not db.is_sqlite:
        await db.write(lambda conn: conn.exec_driver_sql("ANALYZE"))


class ServerClock:
    """ASGI middleware around the whole app: the server's own time per HTTP request, from the
    request's arrival to the last byte of its response handed to the transport."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.samples: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # Recorded before the bytes leave, so the client never sees a response whose
                # sample is missing.
                self.samples.append(perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)

    def last(self) -> float:
        return self.samples[-1]


@dataclass
class BenchServer:
    url: str
    clock: ServerClock
    client: httpx.AsyncClient

    async def call(self, method: str, path: str, expect: int, **kwargs: Any) -> float:
        """Send one request, check its status, return the server's own time for it."""
        response = await self.client.request(method, path, **kwargs)
        if response.status_code != expect:
            raise RuntimeError(
                f"{method} {path}: expected {expect}, got {response.status_code}: "
                f"{response.text[:500]}"
            )
        return self.clock.last()


@asynccontextmanager
async def serve(url: str, workdir: Path, user: BenchUser) -> AsyncIterator[BenchServer]:
    """chatkeep in a thread of this process (uvicorn, as in the tests) over ``url``, and an
    httpx client signed in as ``user`` with its API key. Rate limits are off: a benchmark sends
    more than a person would."""
    settings = Settings(
        data_dir=workdir / "data",
        database_url=url,
        demo_model=True,
        ollama_autodetect=False,
        rate_limit_per_minute=0,
    )
    thread = ServerThread(settings)
    clock = ServerClock(thread.app)
    thread.server.config.app = clock  # uvicorn loads the app when it starts serving
    thread.start()
    try:
        async with httpx.AsyncClient(
            base_url=thread.url, headers=user.headers, timeout=60
        ) as client:
            yield BenchServer(thread.url, clock, client)
    finally:
        thread.stop()
