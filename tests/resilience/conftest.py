"""Fixtures for the resilience tests: seeded randomness, databases and fake upstreams shared by
a module's multi-worker servers, and direct database readers. The helpers themselves live in
``resilience_kit.py``.

The verdict of every test here comes from ``support.checker`` (SPEC 9: Jepsen's set checker):
the clients log what was acknowledged, the database says what is stored.

Randomness is seeded: ``CHATKEEP_CHAOS_SEED=<n>`` replays a run; each test mixes its own id into
the seed and records it in the report (``user_properties``).
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from resilience_kit import Store

from support.fake_upstream import FakeUpstream, run_fake_upstream

DEFAULT_SEED = 20240611


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The run's seed, different per test but fixed unless ``CHATKEEP_CHAOS_SEED`` says so."""
    base = int(os.environ.get("CHATKEEP_CHAOS_SEED", DEFAULT_SEED))
    value = base + sum(request.node.nodeid.encode())
    request.node.user_properties.append(("seed", value))
    print(f"seed {value} (CHATKEEP_CHAOS_SEED={base})")  # shown when the test fails
    return value


@pytest.fixture
def rng(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture(scope="module")
def shared_db_url(module_db_url: str) -> str:
    """A fresh database per module and kind, for modules that share one multi-worker server."""
    return module_db_url


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeUpstream]:
    """One fake upstream for a module's servers; each test resets its knobs and counters."""
    with run_fake_upstream() as upstream:
        yield upstream


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as upstream:
        yield upstream


@pytest.fixture
async def store_factory() -> AsyncIterator[Callable[[str], Store]]:
    """``Store(db_url)`` readers, disposed of after the test."""
    made: list[Store] = []

    def make(db_url: str) -> Store:
        made.append(Store(db_url))
        return made[-1]

    yield make
    for store in made:
        await store.dispose()
