"""Limits that hold for the deployment (SPEC 2, G8): per-user requests, sign-in attempts per
account and per address, and concurrent generations per user answer ``429`` with
``Retry-After`` at the same count with 1 worker process or 4, because their state is in the
database, not in each process (a per-process limiter lets 4 workers allow 4 times the limit).

Every request opens a new connection, so the workers share them out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from support.factories import Account, make_accounts, new_id
from support.fake_upstream import FakeUpstream, run_fake_upstream
from support.server import ServerProcess

REQUESTS_PER_MINUTE = 24
FAILED_LOGINS = 5
LOGINS_PER_ADDRESS = 12
GENERATIONS = 2


@dataclass
class Deployment:
    url: str
    alice: Account  # the request limit
    bob: Account  # the sign-in limits
    carol: Account  # the generation limit
    fake: FakeUpstream
    workers: int


@pytest.fixture(
    scope="module",
    params=[("sqlite", 1), ("postgres", 4)],
    ids=["sqlite-1-worker", "postgres-4-workers"],
)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    kind, workers = request.param
    tmp_path = tmp_path_factory.mktemp("limits")
    if kind == "sqlite":
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'chatkeep.db'}"
    else:
        db_url = request.getfixturevalue("postgres_cluster").create_database(f"limits_{workers}")
    accounts = asyncio.run(make_accounts(db_url, "alice", "bob", "carol"))
    with run_fake_upstream() as fake:
        env = {
            "CHATKEEP_DATABASE_URL": db_url,
            "CHATKEEP_DATA_DIR": str(tmp_path / "data"),
            "CHATKEEP_OPENAI_BASE_URL": fake.base_url,
            "CHATKEEP_OPENAI_API_KEY": "test",
            "CHATKEEP_DEMO_MODEL": "false",
            "CHATKEEP_DEFAULT_MODEL": "fake-model",
            "CHATKEEP_OLLAMA_AUTODETECT": "false",
            "CHATKEEP_RATE_LIMIT_PER_MINUTE": str(REQUESTS_PER_MINUTE),
            "CHATKEEP_LOGIN_ATTEMPTS_PER_MINUTE": str(FAILED_LOGINS),
            "CHATKEEP_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE": str(LOGINS_PER_ADDRESS),
            "CHATKEEP_MAX_CONCURRENT_GENERATIONS_PER_USER": str(GENERATIONS),
        }
        server = ServerProcess(env, workers=workers, log_path=tmp_path / "server.log")
        server.start(timeout=120)
        try:
            yield Deployment(
                server.url, accounts["alice"], accounts["bob"], accounts["carol"], fake, workers
            )
        finally:
            server.stop()


def fresh_window() -> None:
    """Counts are per clock minute: start a test's burst early in one, so that all of it falls
    in the same window (waits at most 20 s, and only when the minute is nearly over)."""
    into = time.time() % 60
    if into > 40:
        time.sleep(60 - into + 0.2)


async def status(url: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_per_user_requests(deployment: Deployment) -> None:
    fresh_window()
    url, alice = deployment.url, deployment.alice
    answers = [
        await status(url, "GET", "/api/sessions", headers=alice.headers)
        for _ in range(REQUESTS_PER_MINUTE + 6)
    ]
    codes = [r.status_code for r in answers]
    assert codes == [200] * REQUESTS_PER_MINUTE + [429] * 6, codes
    assert_limited(answers[-1])
    # Per user: bob is not slowed down by alice.
    assert (
        await status(url, "GET", "/api/sessions", headers=deployment.bob.headers)
    ).status_code == 200


async def test_sign_ins_per_account_and_per_address(deployment: Deployment) -> None:
    fresh_window()
    url, bob = deployment.url, deployment.bob
    wrong = {"name": bob.name, "password": "not bob's password"}
    codes = [
        (await status(url, "POST", "/api/auth/login", json=wrong)).status_code
        for _ in range(FAILED_LOGINS + 2)
    ]
    assert codes == [401] * FAILED_LOGINS + [429] * 2, codes
    # The account is throttled, even for the right password, until the window ends.
    right = {"name": bob.name, "password": bob.password}
    assert_limited(await status(url, "POST", "/api/auth/login", json=right))
    # The address: every attempt counts, whichever name it tries.
    used = FAILED_LOGINS + 3
    codes = [
        (
            await status(
                url,
                "POST",
                "/api/auth/login",
                json={"name": f"nobody{i}", "password": "guess-guess"},
            )
        ).status_code
        for i in range(LOGINS_PER_ADDRESS - used + 2)
    ]
    assert codes == [401] * (LOGINS_PER_ADDRESS - used) + [429] * 2, codes


async def test_concurrent_generations_per_user(deployment: Deployment) -> None:
    deployment.fake.set(hang=True)  # replies stream until cancelled
    url, headers = deployment.url, deployment.carol.headers

    async def start(session_id: str) -> httpx.Response:
        body = {"message": {"id": new_id(), "content": "think long"}, "session": {"title": "t"}}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
            async with client.stream(
                "POST", f"/api/sessions/{session_id}/turns", json=body
            ) as response:
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    async for line in response.aiter_lines():
                        if line.startswith("event: start"):
                            break
                else:
                    await response.aread()
                return response

    sessions = [new_id() for _ in range(GENERATIONS + 1)]
    fresh_window()  # the request limit must not be what answers 429 here
    started = [await start(sid) for sid in sessions[:GENERATIONS]]
    assert [r.status_code for r in started] == [200] * GENERATIONS
    refused = await start(sessions[GENERATIONS])
    assert_limited(refused)
    assert "at once" in refused.json()["detail"]
    # Once one finishes, there is room again.
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        messages = (await client.get(f"/api/sessions/{sessions[0]}/messages")).json()["messages"]
        (reply,) = [m for m in messages if m["role"] == "assistant"]
        cancel = await client.post(f"/api/sessions/{sessions[0]}/messages/{reply['id']}/cancel")
        assert cancel.status_code == 200, cancel.text
    deadline = time.monotonic() + 30
    while True:
        again = await start(sessions[GENERATIONS])
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert again.status_code == 200, again.text
    deployment.fake.set(hang=False)
