"""Fixtures: a real database (SQLite file or PostgreSQL cluster), a real server over loopback,
and accounts with API keys. Tests that take ``db_url`` run once per database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from chatkeep.settings import Settings
from support.factories import make_accounts
from support.postgres import postgres_cluster, postgres_url  # noqa: F401
from support.server import ServerThread
from support.stack import Stack

DATABASES = ["sqlite", "postgres"]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database on the test cluster."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'chatkeep.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module", params=DATABASES)
def module_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like ``db_url``, but one database per module: for modules that share one multi-worker
    server, since starting ``chatkeep serve --workers 3`` costs seconds."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('module') / 'chatkeep.db'}"
        return
    cluster = request.getfixturevalue("postgres_cluster")
    name = f"m_{uuid.uuid4().hex[:16]}"
    try:
        yield cluster.create_database(name)
    finally:
        cluster.drop_database(name)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        demo_model=True,
        ollama_autodetect=False,
        rate_limit_per_minute=0,
    )


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    accounts = await make_accounts(settings.resolved_database_url, "alice", "bob")
    server = ServerThread(settings).start()
    try:
        yield Stack(server.url, server, accounts["alice"], accounts["bob"], settings)
    finally:
        server.stop()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """alice's client."""
    async with stack.client() as client:
        yield client
