"""Self-test of the PostgreSQL test cluster in tests/support/postgres.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support.postgres import PostgresCluster, require_postgres


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    # Its own cluster rather than the session one: this module also checks start/stop themselves.
    require_postgres()
    with PostgresCluster() as running:
        yield running


def test_starts_quickly_on_loopback_with_settings(cluster: PostgresCluster) -> None:
    assert cluster.startup_seconds is not None and cluster.startup_seconds < 20
    assert cluster.psql("SHOW max_connections") == "300"
    assert cluster.psql("SHOW fsync") == "off"
    assert cluster.psql("SHOW listen_addresses") == "127.0.0.1"


async def test_two_databases_via_sqlalchemy_asyncpg(cluster: PostgresCluster) -> None:
    urls = [cluster.create_database("ck_self_a"), cluster.create_database("ck_self_b")]
    try:
        assert urls[0] == f"postgresql+asyncpg://postgres@127.0.0.1:{cluster.port}/ck_self_a"
        assert {"ck_self_a", "ck_self_b"} <= cluster.databases()
        for name, url in zip(("ck_self_a", "ck_self_b"), urls, strict=True):
            engine = create_async_engine(url)
            try:
                async with engine.begin() as conn:
                    assert (await conn.execute(text("select 1"))).scalar_one() == 1
                    db = (await conn.execute(text("select current_database()"))).scalar_one()
                    assert db == name
                    # Databases are separate: a table made in one is not in the other.
                    await conn.execute(text(f"create table only_in_{name} (x int)"))
                    tables = (
                        await conn.execute(
                            text("select tablename from pg_tables where tablename like 'only_in_%'")
                        )
                    ).scalars()
                    assert list(tables) == [f"only_in_{name}"]
            finally:
                await engine.dispose()

        # Dropping works even while a client is still connected.
        engine = create_async_engine(urls[0])
        try:
            async with engine.connect() as conn:
                await conn.execute(text("select 1"))
                cluster.drop_database("ck_self_a")
        except Exception:
            pass  # the forced drop terminates this connection: expected
        finally:
            await engine.dispose()
        cluster.drop_database("ck_self_b")
        assert not {"ck_self_a", "ck_self_b"} & cluster.databases()
    finally:
        cluster.drop_database("ck_self_a")
        cluster.drop_database("ck_self_b")


def test_rejects_odd_database_names(cluster: PostgresCluster) -> None:
    with pytest.raises(ValueError):
        cluster.create_database('x"; drop database postgres; --')


def test_stop_removes_everything() -> None:
    require_postgres()
    cluster = PostgresCluster().start()
    tmpdir, port = cluster.tmpdir, cluster.port
    assert tmpdir is not None and (tmpdir / "data" / "postmaster.pid").exists()
    cluster.stop()
    cluster.stop()  # idempotent
    assert not cluster.running
    assert not tmpdir.exists()
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
