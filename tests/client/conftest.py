"""Fixtures for the SDK and CLI tests: one database of each kind, a fake model upstream and a
chatkeep server per database for the whole run, a fault proxy per test, and ``ck``: a client of
either flavour (``Client``, or ``AsyncClient`` behind ``sdkkit.Synced``) for shared test bodies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sdkkit import Synced

import chatkeep
from support.fake_upstream import FakeUpstream, run_fake_upstream
from support.fault_proxy import FaultProxy
from support.sdk_stack import SdkStack, start_sdk_stack


@pytest.fixture(scope="session")
def sdk_fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def sdk_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sdk_fake: FakeUpstream,
) -> Iterator[SdkStack]:
    """A chatkeep server whose models are the fake upstream's, with alice and bob."""
    data_dir = tmp_path_factory.mktemp("sdk")
    with start_sdk_stack(request.param, request, data_dir, sdk_fake) as stack:
        yield stack


@pytest.fixture(autouse=True)
def fresh_fake(sdk_fake: FakeUpstream) -> FakeUpstream:
    sdk_fake.reset()
    return sdk_fake


@pytest.fixture
def proxy(sdk_stack: SdkStack) -> Iterator[FaultProxy]:
    """The network between the client and the server, to break on demand."""
    with FaultProxy(sdk_stack.url, seed=1234) as fault_proxy:
        yield fault_proxy


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(flavor: str, sdk_stack: SdkStack) -> Iterator[Callable[..., Any]]:
    """``make_client(**options)``: a ``Client`` or a synced ``AsyncClient`` with those options;
    ``fresh=True`` in options asks for a new connection per request (faults are per connection).
    """
    made: list[Any] = []
    loop = asyncio.new_event_loop()

    def make(**options: Any) -> Any:
        options.setdefault("base_url", sdk_stack.url)
        options.setdefault("api_key", sdk_stack.alice.key)
        options.setdefault("backoff_base", 0.01)
        options.setdefault("backoff_max", 0.2)
        fresh = options.pop("fresh", False)
        limits = httpx.Limits(max_keepalive_connections=0) if fresh else httpx.Limits()
        if flavor == "sync":
            client: Any = chatkeep.Client(transport=httpx.HTTPTransport(limits=limits), **options)
        else:
            transport = httpx.AsyncHTTPTransport(limits=limits)
            client = Synced(chatkeep.AsyncClient(transport=transport, **options), loop)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()
        loop.close()


@pytest.fixture
def ck(make_client: Callable[..., Any]) -> Any:
    """alice's client, of either flavour."""
    return make_client()
