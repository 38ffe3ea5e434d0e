"""Fixtures for the turn tests: one database of each kind (SQLite, PostgreSQL), one fake upstream
and one chatkeep server per database for the whole folder, and a clean fake for every test.

Starting a server and hashing the accounts' passwords costs about a second, so the server is
shared; each test uses its own fresh ids, and the fake's knobs and counters are reset before it.
A test that needs other settings starts its own server on the same database (``start_stack``).
After each test the server and the fake must be quiet again (no generation running, no upstream
stream open), so no test can leak work into the next one's counts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from turnkit import TurnStack, turn_settings

from support.factories import Account, make_accounts_sync
from support.fake_upstream import FakeUpstream, run_fake_upstream
from support.server import ServerThread

QUIET_DEADLINE_S = 10.0


@dataclass(frozen=True)
class TurnDb:
    url: str
    accounts: dict[str, Account]


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def turn_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TurnDb]:
    """One database of each kind for all turn tests, migrated, with alice and bob."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('turns') / 'chatkeep.db'}"
        yield TurnDb(url, make_accounts_sync(url, "alice", "bob"))
        return
    cluster = request.getfixturevalue("postgres_cluster")
    name = f"turns_{uuid.uuid4().hex[:16]}"
    url = cluster.create_database(name)
    try:
        yield TurnDb(url, make_accounts_sync(url, "alice", "bob"))
    finally:
        cluster.drop_database(name)


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as upstream:
        yield upstream


def _start(db: TurnDb, fake: FakeUpstream, data_dir: Path, overrides: dict[str, Any]) -> TurnStack:
    settings = turn_settings(db.url, fake, data_dir, **overrides)
    server = ServerThread(settings).start()
    return TurnStack(server, fake, db.accounts["alice"], db.accounts["bob"], settings, db.url)


@pytest.fixture(scope="session")
def turn_stack(
    turn_db: TurnDb, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TurnStack]:
    """A chatkeep server whose only model is the fake upstream (``fake-model``)."""
    stack = _start(turn_db, fake, tmp_path_factory.mktemp("data"), {})
    try:
        yield stack
    finally:
        stack.server.stop()


@pytest.fixture
def start_stack(
    turn_db: TurnDb, fake: FakeUpstream, tmp_path: Path
) -> Iterator[Callable[..., TurnStack]]:
    """Start another server on the same database and fake, with other settings."""
    started: list[TurnStack] = []

    def start(**overrides: Any) -> TurnStack:
        stack = _start(turn_db, fake, tmp_path / f"data{len(started)}", overrides)
        started.append(stack)
        return stack

    try:
        yield start
    finally:
        for stack in started:
            _settle(stack)
            stack.server.stop()


def _settle(stack: TurnStack) -> None:
    """Wait until the stack is quiet; a generation a failed test left running is stopped."""
    deadline = time.monotonic() + QUIET_DEADLINE_S
    while not stack.quiet():
        if time.monotonic() > deadline:
            stack.stop_generations()
            deadline = time.monotonic() + QUIET_DEADLINE_S
            while not stack.quiet() and time.monotonic() < deadline:
                time.sleep(0.01)
            raise AssertionError("a generation was still running after the test")
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def fresh_fake(turn_stack: TurnStack, fake: FakeUpstream) -> Iterator[FakeUpstream]:
    """Default knobs and zero counters for every test; afterwards, everything has finished."""
    fake.reset()
    yield fake
    _settle(turn_stack)
    # Also afterwards: the next test may start a server (the other database's, or its own)
    # before its own reset, and a key or fault left set here would be that server's first sight.
    fake.reset()


@pytest.fixture
async def api(turn_stack: TurnStack) -> AsyncIterator[httpx.AsyncClient]:
    """alice's client on the shared server."""
    async with turn_stack.client() as client:
        yield client


@pytest.fixture
async def other_api(turn_stack: TurnStack) -> AsyncIterator[httpx.AsyncClient]:
    """alice again, on a second client: another tab, another device."""
    async with turn_stack.client() as client:
        yield client
