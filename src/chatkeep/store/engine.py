"""Connections and transactions: one hand-off per unit of work.

Store operations are plain synchronous SQLAlchemy Core functions ``op(conn, ...)``. A caller on
the event loop runs a whole unit of work with ``await db.write(op, ...)`` or
``await db.read(op, ...)``:

- SQLite (stdlib ``sqlite3``): the unit of work runs in a thread — every write in the one writer
  thread (SQLite has one writer at a time anyway, so writers of this process queue there without
  holding a pooled connection), reads on a small pool of reader threads. The event loop pays one
  hand-off per transaction instead of one per statement (issue 6: 17 round trips to aiosqlite's
  thread per append).
- PostgreSQL (asyncpg): ``AsyncConnection.run_sync(op)``; no pre-ping per transaction — a dropped
  connection is a transient error, which writes retry and reads retry once.

Every write runs through ``Database.write``: one transaction, retried with backoff on transient
errors (a locked SQLite file, a PostgreSQL serialization failure or dropped connection), never
dropped (G9). On SQLite a write transaction starts with ``BEGIN IMMEDIATE``: a deferred one that
reads and then writes fails at once with SQLITE_BUSY_SNAPSHOT, ignoring busy_timeout (SPEC 9).
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")
P = ParamSpec("P")
Op = Callable[Concatenate[Connection, P], T]

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


def sync_sqlite_url(url: str) -> str:
    """Any SQLite URL (``sqlite+aiosqlite://``, ``sqlite://``) as one for the stdlib driver."""
    return make_url(url).set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)


class Database:
    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        pool_size: int = 10,
        retry_attempts: int = 8,
        on_retry: Callable[[BaseException], None] | None = None,
        sqlite_readers: int = 4,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.retry_attempts = retry_attempts
        self._on_retry = on_retry
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        if self.is_sqlite:
            self._sync = create_engine(
                sync_sqlite_url(url),
                pool_size=sqlite_readers + 2,
                max_overflow=sqlite_readers,
                pool_timeout=60,
                connect_args={"check_same_thread": False},
            )
            _configure_sqlite(self._sync, sqlite_synchronous)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="chatkeep-sqlite-writer")
            self._readers = ThreadPoolExecutor(
                sqlite_readers, thread_name_prefix="chatkeep-sqlite-reader"
            )
        else:
            self._async = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size * 2,
                pool_timeout=60,
                pool_recycle=3600,
            )

    @property
    def dialect_name(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    async def dispose(self) -> None:
        if self._sync is not None:
            loop = asyncio.get_running_loop()
            # Let queued units of work finish, then close the connections.
            await loop.run_in_executor(None, self._writer.shutdown)
            await loop.run_in_executor(None, self._readers.shutdown)
            self._sync.dispose()
        if self._async is not None:
            await self._async.dispose()

    def _run_sqlite(self, write: bool, op: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn:
            if write:
                conn.execution_options(**{_WRITE: True})
            with conn.begin():
                return op(conn)

    async def _once(self, write: bool, op: Callable[[Connection], T]) -> T:
        if self._sync is not None:
            pool = self._writer if write else self._readers
            run = functools.partial(self._run_sqlite, write, op)
            return await asyncio.get_running_loop().run_in_executor(pool, run)
        assert self._async is not None
        async with self._async.connect() as conn, conn.begin():
            return await conn.run_sync(op)

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(conn, *args, **kwargs)`` in one read-only transaction (deferred on SQLite, so
        readers never wait for writers); once more if the connection turned out dead."""

        def work(conn: Connection) -> T:
            return op(conn, *args, **kwargs)

        try:
            return await self._once(False, work)
        except DBAPIError as exc:
            if self.is_sqlite or not is_transient(exc):
                raise
            return await self._once(False, work)

    async def write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(conn, *args, **kwargs)`` in one write transaction; run it again from the
        start on a transient error (G9)."""

        def work(conn: Connection) -> T:
            return op(conn, *args, **kwargs)

        attempt = 0
        while True:
            try:
                return await self._once(True, work)
            except Exception as exc:
                attempt += 1
                if not is_transient(exc) or attempt >= self.retry_attempts:
                    raise
                if self._on_retry is not None:
                    self._on_retry(exc)
                # Exponential backoff with full jitter: 5 ms, 10 ms, ... capped at 1 s.
                await asyncio.sleep(random.uniform(0, min(1.0, 0.005 * 2**attempt)))


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
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

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value
