"""A chatkeep server for the SDK and CLI tests (tests/client, tests/cli): its models are a fake
upstream's (plus ``demo``), with two accounts, on a SQLite file or a PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatkeep.settings import Settings
from support.factories import Account, make_accounts_sync
from support.fake_upstream import FakeUpstream
from support.server import ServerThread

FAKE_MODEL = "fake-model"


@dataclass
class SdkStack:
    server: ServerThread
    fake: FakeUpstream
    alice: Account
    bob: Account
    db_url: str

    @property
    def url(self) -> str:
        return self.server.url


@contextmanager
def start_sdk_stack(
    kind: str, request: pytest.FixtureRequest, data_dir: Path, fake: FakeUpstream
) -> Iterator[SdkStack]:
    """``kind`` is "sqlite" or "postgres" (a new database on the session's test cluster)."""
    cluster, name = None, ""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'chatkeep.db'}"
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        name = f"sdk_{uuid.uuid4().hex[:16]}"
        url = cluster.create_database(name)
    accounts = make_accounts_sync(url, "alice", "bob")
    settings = Settings(
        data_dir=data_dir / "data",
        database_url=url,
        demo_model=True,
        ollama_autodetect=False,
        rate_limit_per_minute=0,
        openai_base_url=fake.base_url,
        openai_api_key="test",
        default_model=FAKE_MODEL,
        checkpoint_interval_s=0.05,
    )
    server = ServerThread(settings).start()
    try:
        yield SdkStack(server, fake, accounts["alice"], accounts["bob"], url)
    finally:
        server.stop()
        if cluster is not None:
            cluster.drop_database(name)
