"""SQLite's writer thread group-commits: writes that queue while it is busy share one COMMIT
(one fsync), each is durable before its caller is answered, and one that fails is rolled back
alone, its neighbours' work kept (G9: a failed write is reported, never half-applied)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from chatkeep.store.engine import Database


def _setup(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))


def _insert(conn: Connection, i: int, v: str | None) -> int:
    conn.execute(text("INSERT INTO t (id, v) VALUES (:i, :v)"), {"i": i, "v": v})
    return i


async def test_queued_writes_share_one_commit_and_fail_alone(tmp_path) -> None:
    path = tmp_path / "g.db"
    db = Database(f"sqlite:///{path}")
    try:
        await db.write(_setup)
        busy, release = threading.Event(), threading.Event()

        def hold(conn: Connection) -> None:
            busy.set()
            release.wait(10)

        holder = asyncio.create_task(db.write(hold))
        await asyncio.to_thread(busy.wait, 10)
        commits_before = db.writer_commits
        # 20 writes queue behind the holder; two of them fail, each in its own way.
        values: list[str | None] = [f"v{i}" for i in range(20)]
        values[5] = None  # NOT NULL violated
        writes = [db.write(_insert, i, v) for i, v in enumerate(values)]
        writes.append(db.write(_insert, 3, "duplicate id"))
        pending = asyncio.gather(*writes, return_exceptions=True)
        await asyncio.sleep(0.2)
        release.set()
        await holder
        results = await pending
        assert isinstance(results[5], IntegrityError)
        assert isinstance(results[20], IntegrityError)
        assert [r for i, r in enumerate(results) if i not in (5, 20)] == [
            i for i in range(20) if i != 5
        ]
        # The holder's group, then at most a couple more: not one COMMIT per write.
        assert db.writer_commits - commits_before <= 3
        # Durable and visible to another connection as soon as the callers were answered.
        other = sqlite3.connect(path)
        stored = other.execute("SELECT id, v FROM t ORDER BY id").fetchall()
        other.close()
        assert stored == [(i, f"v{i}") for i in range(20) if i != 5]
    finally:
        await db.dispose()


async def test_a_lone_failing_write_leaves_nothing_behind(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        await db.write(_setup)

        def half(conn: Connection) -> None:
            _insert(conn, 1, "kept?")
            raise ValueError("changed my mind")

        with pytest.raises(ValueError):
            await db.write(half)
        assert await db.read(lambda c: c.scalar(text("SELECT count(*) FROM t"))) == 0
    finally:
        await db.dispose()
