"""One documented deployment per module (docs/deploy.md): PostgreSQL, redis-server, nginx and 3
``chatkeep serve`` replicas as real processes (``support.cluster``), the fake upstream as the
only model. Tests reach it through nginx (``cluster.url``) or a chosen replica directly."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "resilience"))

from cluster_kit import LEASE_TTL_S, RATE_LIMIT_PER_MINUTE, REAPER_INTERVAL_S  # noqa: E402
from resilience_kit import new_accounts, server_env  # noqa: E402

from support.cluster import Cluster  # noqa: E402
from support.factories import Account  # noqa: E402
from support.fake_upstream import FakeUpstream, run_fake_upstream  # noqa: E402
from support.postgres import require_postgres  # noqa: E402


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream
) -> Iterator[Cluster]:
    require_postgres()
    run_dir = tmp_path_factory.mktemp("cluster")
    env = server_env(
        "",
        run_dir / "data",
        fake_upstream,
        lease_ttl_s=LEASE_TTL_S,
        reaper_interval_s=REAPER_INTERVAL_S,
        rate_limit_per_minute=RATE_LIMIT_PER_MINUTE,
    )
    del env["CHATKEEP_DATABASE_URL"]  # the cluster's own PostgreSQL
    cluster = Cluster(run_dir, replicas=3, redis=True, env=env).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def account_pool(cluster: Cluster) -> list[Account]:
    return asyncio.run(new_accounts(cluster.database_url, 24, "cl"))


@pytest.fixture
def accounts(account_pool: list[Account]) -> list[Account]:
    """Fresh accounts per test: rate limits and audit checks do not leak between tests."""
    taken, account_pool[:] = account_pool[:2], account_pool[2:]
    return taken


@pytest.fixture(autouse=True)
def quiet_upstream(fake_upstream: FakeUpstream) -> Iterator[None]:
    fake_upstream.reset()
    yield
    fake_upstream.state.wait_until(lambda s: s.active == 0, 30)
