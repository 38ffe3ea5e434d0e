"""Fixtures for the CLI tests: a chatkeep server per database for the whole run (a fake model
behind it) and ``cli``: the ``chatkeep`` command pointed at it as alice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import Cli

from support.fake_upstream import FakeUpstream, run_fake_upstream
from support.sdk_stack import SdkStack, start_sdk_stack


@pytest.fixture(scope="session")
def cli_fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def cli_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cli_fake: FakeUpstream
) -> Iterator[SdkStack]:
    with start_sdk_stack(request.param, request, tmp_path_factory.mktemp("cli"), cli_fake) as s:
        yield s


@pytest.fixture(autouse=True)
def fresh_fake(cli_fake: FakeUpstream) -> FakeUpstream:
    cli_fake.reset()
    return cli_fake


@pytest.fixture
def cli(cli_stack: SdkStack, tmp_path: Path) -> Cli:
    return Cli(cli_stack.url, cli_stack.alice.key, tmp_path)
