"""Connections and transactions: one hand-off per unit of work.

Store operations are plain synchronous SQLAlchemy Core functions ``op(conn, ...)``. A caller on
the event loop runs a whole unit of work with ``await db.write(op, ...)`` or
``await db.read(op, ...)``:

- SQLite (stdlib ``sqlite3``): the unit of work runs in a thread — every write in the one writer
  thread (SQLite has one writer at a time anyway, so writers of this process queue there without
  holding a pooled connection), reads on a small pool of reader threads. The event loop pays one
  hand-off per transaction instead of one per statement (issue 6: 17 round trips to aiosqlite's
  thread per append). The writer group-commits: the units of work that queued while it was busy
  run in one transaction, each inside its own SAVEPOINT, under one COMMIT (one fsync); each
  caller is answered after that COMMIT, so every write is still durable before its 2xx, and one
  that fails is rolled back to its savepoint without touching its neighbours.
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
import json
import queue
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")
P = ParamSpec("P")
Op = Callable[Concatenate[Connection, P], T]

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


def json_loads(text: str) -> Any:
    """JSON columns, decoded: most values are a message's text (a JSON string) or null. orjson
    reads a top-level string exactly; anything else goes to the stdlib, which keeps integers
    beyond 64 bits (orjson would turn them into floats)."""
    if text == "null":
        return None
    if text[:1] == '"':
        return orjson.loads(text)
    return json.loads(text)


def sqlite_url(url: str, driver: str = "pysqlite") -> str:
    """Any SQLite URL (``sqlite+aiosqlite://``, ``sqlite://``) as one for the stdlib driver."""
    return make_url(url).set(drivername=f"sqlite+{driver}").render_as_string(hide_password=False)


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
        sqlite_max_group: int = 64,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.retry_attempts = retry_attempts
        self._on_retry = on_retry
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        if self.is_sqlite:
            self._sync = create_engine(
                sqlite_url(url, "chatkeep_read"),
                pool_size=sqlite_readers,
                max_overflow=sqlite_readers,
                pool_timeout=60,
                connect_args={"check_same_thread": False},
                chatkeep_synchronous=sqlite_synchronous,
                json_deserializer=json_loads,
            )
            self._sync_writer = create_engine(
                sqlite_url(url, "chatkeep_write"),
                pool_size=1,
                max_overflow=1,
                connect_args={"check_same_thread": False},
                chatkeep_synchronous=sqlite_synchronous,
                json_deserializer=json_loads,
            )
            self._writer = _GroupWriter(self._sync_writer, max_group=sqlite_max_group)
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
                json_deserializer=json_loads,
            )

    @property
    def writer_commits(self) -> int:
        """COMMITs of SQLite's writer thread so far (group commit: fewer than writes)."""
        return self._writer.commits if self._sync is not None else 0

    @property
    def dialect_name(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    async def dispose(self) -> None:
        if self._sync is not None:
            loop = asyncio.get_running_loop()
            # Let queued units of work finish, then close the connections.
            await loop.run_in_executor(None, self._writer.stop)
            await loop.run_in_executor(None, self._readers.shutdown)
            self._sync.dispose()
            self._sync_writer.dispose()
        if self._async is not None:
            await self._async.dispose()

    def _read_sqlite(self, op: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn, conn.begin():
            return op(conn)

    async def _once(self, write: bool, op: Callable[[Connection], T]) -> T:
        if self._sync is not None:
            if write:
                return await self._writer.submit(op)
            run = functools.partial(self._read_sqlite, op)
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
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


@dataclass
class _Job:
    op: Callable[[Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    ok: bool = False
    value: Any = None


class _GroupWriter:
    """The one thread that writes to a SQLite file for this process, committing in groups."""

    def __init__(self, engine: Engine, *, max_group: int) -> None:
        self._engine = engine
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.commits = 0  # tests and benchmarks read this

    def submit(self, op: Callable[[Connection], T]) -> asyncio.Future[T]:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="chatkeep-sqlite-writer", daemon=True
                    )
                    self._thread.start()
        loop = asyncio.get_running_loop()
        job = _Job(op, loop, loop.create_future())
        self._queue.put(job)
        return job.future

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            # No waiting for company: whatever queued while the last COMMIT was syncing rides
            # this one, so a lone writer pays nothing and N concurrent ones share one fsync.
            while len(group) < self._max_group:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                group.append(job)
            self._commit(group)
            for job in group:
                job.loop.call_soon_threadsafe(_settle, job)

    def _commit(self, group: list[_Job]) -> None:
        try:
            with self._engine.connect() as conn, conn.begin():
                if len(group) == 1:
                    # Alone: its own transaction is its savepoint.
                    group[0].value, group[0].ok = group[0].op(conn), True
                else:
                    for job in group:
                        try:
                            with conn.begin_nested():
                                job.value, job.ok = job.op(conn), True
                        except Exception as exc:
                            job.value, job.ok = exc, False
        except Exception as exc:
            # BEGIN or COMMIT failed (or a lone unit raised): nothing of the group is stored.
            for job in group:
                job.value, job.ok = exc, False
            return
        self.commits += 1


def _settle(job: _Job) -> None:
    if job.future.cancelled():
        return
    if job.ok:
        job.future.set_result(job.value)
    else:
        job.future.set_exception(job.value)


class _SQLiteDialect(SQLiteDialect_pysqlite):
    """The stdlib driver as chatkeep runs it. Set up in the dialect, not with engine events: an
    engine with any connection event dispatches through its listener lists on every statement
    (issue 6: that was a tenth of a statement's cost)."""

    begin_sql = "BEGIN"
    supports_statement_cache = True

    def __init__(self, chatkeep_synchronous: str = "FULL", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chatkeep_synchronous = chatkeep_synchronous

    def on_connect(self) -> Callable[[Any], None]:
        inherited = super().on_connect()
        synchronous = self.chatkeep_synchronous

        def connect(dbapi_connection: Any) -> None:
            inherited(dbapi_connection)
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

        return connect

    def do_begin(self, dbapi_connection: Any) -> None:
        dbapi_connection.execute(self.begin_sql)


class _SQLiteWriteDialect(_SQLiteDialect):
    begin_sql = "BEGIN IMMEDIATE"
    supports_statement_cache = True


registry.register("sqlite.chatkeep_read", __name__, "_SQLiteDialect")
registry.register("sqlite.chatkeep_write", __name__, "_SQLiteWriteDialect")


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value
