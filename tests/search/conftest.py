"""One server and two accounts per database for the search tests (module scope): starting a
server and hashing two passwords costs seconds, and each test uses words of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from chatkeep.settings import Settings
from support.factories import make_accounts_sync
from support.server import ServerThread
from support.stack import Stack


@pytest.fixture(scope="module")
def stack(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("search")) / "data",
        database_url=module_db_url,
        demo_model=True,
        ollama_autodetect=False,
        rate_limit_per_minute=0,
    )
    accounts = make_accounts_sync(settings.resolved_database_url, "alice", "bob")
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
