"""Connections and transactions.

Every write runs through ``Database.write``: one transaction, retried with backoff on transient
errors (a locked SQLite file, a PostgreSQL serialization failure or dropped connection), never
dropped (G9). On SQLite a write transaction starts with ``BEGIN IMMEDIATE``: a deferred one that
reads and then writes fails at once with SQLITE_BUSY_SNAPSHOT, ignoring busy_timeout (SPEC 9).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

T = TypeVar("T")

_WRITE = "chatkeep_write"
# PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock, and the
# connection-level classes 08xxx (connection exception) and 57P0x (admin shutdown).
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "55P03"}


class Transient(Exception):
    """Raised inside a write to ask ``Database.write`` to run it again from the start."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, Transient):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str) and (state in _TRANSIENT_SQLSTATES or state.startswith("08")):
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


class Database:
    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        pool_size: int = 10,
        retry_attempts: int = 8,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.retry_attempts = retry_attempts
        self._on_retry = on_retry
        self._write_lock: asyncio.Lock | None = None
        # A server-side pre-ping finds connections that PostgreSQL dropped (restart, idle
        # timeout) before a read uses them; writes are retried anyway. SQLite has no server.
        kwargs: dict[str, Any] = {
            "pool_pre_ping": not self.is_sqlite,
            "pool_size": pool_size,
            "max_overflow": pool_size * 2,
            "pool_timeout": 60,
            "pool_recycle": 3600,
        }
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine, sqlite_synchronous)

    async def dispose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _writer_slot(self) -> AsyncIterator[None]:
        """SQLite has one writer at a time. Writers of this process queue here, holding no
        pooled connection while they wait, so a burst of writes cannot starve the pool (and the
        readers) while each waits for the file's write lock."""
        if not self.is_sqlite:
            yield
            return
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        async with self._write_lock:
            yield

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (deferred on SQLite, so readers never wait for writers)."""
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    async def write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one write transaction; run it again on a transient error."""
        attempt = 0
        while True:
            try:
                async with self._writer_slot():
                    async with self.engine.connect() as conn:
                        await conn.execution_options(**{_WRITE: True})
                        async with conn.begin():
                            return await work(conn)
            except Exception as exc:
                attempt += 1
                if not is_transient(exc) or attempt >= self.retry_attempts:
                    raise
                if self._on_retry is not None:
                    self._on_retry(exc)
                # Exponential backoff with full jitter: 5 ms, 10 ms, ... capped at 1 s.
                await asyncio.sleep(random.uniform(0, min(1.0, 0.005 * 2**attempt)))


def _configure_sqlite(engine: AsyncEngine, synchronous: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        # SQLite's own lower() folds only A-Z; search must ignore case in every script.
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value
