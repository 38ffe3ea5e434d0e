"""G9: transient database errors are retried with backoff, never dropped (TC-5.2's "no retry
logic - failed messages are dropped" is the bug this prevents)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from chatkeep.store.engine import Database, Transient
from support.factories import new_id


async def test_write_runs_again_after_a_transient_error(tmp_path) -> None:
    retries: list[BaseException] = []
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", on_retry=retries.append)
    attempts = 0

    def work(conn: Connection) -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise Transient("try again")
        return int(conn.scalar(text("SELECT 41 + 1")))

    try:
        assert await db.write(work) == 42
    finally:
        await db.dispose()
    assert attempts == 3 and len(retries) == 2


async def test_write_does_not_retry_a_permanent_error(tmp_path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    attempts = 0

    def work(conn: Connection) -> None:
        nonlocal attempts
        attempts += 1
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))

    try:
        with pytest.raises(IntegrityError):
            await db.write(work)
    finally:
        await db.dispose()
    assert attempts == 1


def _batch(n: int) -> dict[str, object]:
    return {"messages": [{"id": new_id(), "role": "user", "content": f"m{i}"} for i in range(n)]}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_batch_waits_out_a_locked_database_and_saves_everything(stack, api, db_url) -> None:
    """TC-5.2 counterpart: a 'network hiccup' on the database side (another process holds the
    write lock) delays the batch; it does not drop or half-save it."""
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={})).status_code == 201
    path = db_url.split(":///", 1)[1]
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(10)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(5)
    pending = asyncio.create_task(api.post(f"/api/sessions/{sid}/messages:batch", json=_batch(3)))
    await asyncio.sleep(0.5)
    assert not pending.done(), "the batch should be waiting for the lock, not failing"
    release.set()
    response = await pending
    holder.join()
    assert response.status_code == 201, response.text
    synced = (await api.get(f"/api/sessions/{sid}/messages")).json()
    assert [m["seq"] for m in synced["messages"]] == [1, 2, 3]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_batch_survives_dropped_database_connections(stack, api, db_url, postgres_cluster):
    """Every pooled connection is killed by the server between two requests; the next batch
    finds dead connections, retries on fresh ones and saves everything, once."""
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={})).status_code == 201
    database = db_url.rsplit("/", 1)[1]
    postgres_cluster.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    response = await api.post(f"/api/sessions/{sid}/messages:batch", json=_batch(3))
    assert response.status_code == 201, response.text
    synced = (await api.get(f"/api/sessions/{sid}/messages")).json()
    assert [m["seq"] for m in synced["messages"]] == [1, 2, 3]
