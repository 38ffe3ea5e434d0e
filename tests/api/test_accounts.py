"""Accounts over real HTTP: first-run set-up, browser sign-in with cookies and CSRF, API keys,
sign-out and the sign-in rate limit. Each test starts a server on an empty database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from chatkeep.settings import Settings
from support.factories import new_id
from support.server import ServerThread

ADMIN = {"name": "admin", "password": "correct horse battery"}
LOGIN_LIMIT = 3


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    """A server on a fresh, migrated database with no account yet."""
    fresh = settings.model_copy(update={"login_attempts_per_minute": LOGIN_LIMIT})
    server = ServerThread(fresh).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def browser(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies, like a browser, signed in as the first-run admin."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/api/auth/setup", json=ADMIN)
        assert response.status_code == 201, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        yield client


async def test_first_run_setup_creates_a_signed_in_admin(url: str) -> None:
    """An empty instance says it needs set-up; set-up makes the admin, signs it in with cookies,
    and cannot run a second time."""
    async with httpx.AsyncClient(base_url=url) as client:
        status = (await client.get("/api/auth/status")).json()
        assert (status["needs_setup"], status["user"]) == (True, None)

        done = await client.post("/api/auth/setup", json=ADMIN)
        assert done.status_code == 201
        assert done.json()["user"] == {"name": "admin", "is_admin": True}
        assert {"chatkeep_session", "chatkeep_csrf"} <= set(client.cookies)
        status = (await client.get("/api/auth/status")).json()
        assert (status["needs_setup"], status["user"]["name"]) == (False, "admin")
        assert status["csrf_token"] == done.json()["csrf_token"]

    async with httpx.AsyncClient(base_url=url) as stranger:
        again = await stranger.post("/api/auth/setup", json={**ADMIN, "name": "intruder"})
        assert (again.status_code, again.json()["code"]) == (409, "already_exists")
        intruder = await stranger.post("/api/auth/login", json={**ADMIN, "name": "intruder"})
        assert intruder.status_code == 401


async def test_racing_setups_make_exactly_one_admin(url: str) -> None:
    """G1 for accounts: two set-ups at once (two tabs on a fresh install) leave one admin."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        names = ["first", "second"]
        answers = await asyncio.gather(
            *(client.post("/api/auth/setup", json={**ADMIN, "name": n}) for n in names)
        )
        assert sorted(r.status_code for r in answers) == [201, 409]
        loser = names[[r.status_code for r in answers].index(409)]
        assert (
            await client.post("/api/auth/login", json={**ADMIN, "name": loser})
        ).status_code == 401


async def test_sign_in_needs_the_right_password_and_sign_out_ends_it(
    url: str, browser: httpx.AsyncClient
) -> None:
    """A wrong password is 401 and sets no cookie; the right one signs in; after sign-out the
    old cookie is worthless, even to someone who copied it."""
    async with httpx.AsyncClient(base_url=url) as client:
        wrong = await client.post("/api/auth/login", json={**ADMIN, "password": "not it at all"})
        assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")
        assert "chatkeep_session" not in client.cookies
        assert (await client.get("/api/sessions")).status_code == 401
        right = await client.post("/api/auth/login", json=ADMIN)
        assert right.status_code == 200
        assert (await client.get("/api/sessions")).status_code == 200

        stolen = client.cookies["chatkeep_session"]
        signed_out = await client.post(
            "/api/auth/logout", headers={"X-CSRF-Token": right.json()["csrf_token"]}
        )
        assert signed_out.status_code == 204
        assert "chatkeep_session" not in client.cookies
    async with httpx.AsyncClient(base_url=url, cookies={"chatkeep_session": stolen}) as thief:
        assert (await thief.get("/api/sessions")).status_code == 401
        assert (await thief.get("/api/auth/status")).json()["user"] is None
    assert (await browser.get("/api/sessions")).status_code == 200  # other sign-ins live on


async def test_cookie_writes_need_the_csrf_token(browser: httpx.AsyncClient) -> None:
    """A signed-in browser reads with its cookie alone; every write must also carry
    X-CSRF-Token, or another site could make the browser write (403 csrf_failed)."""
    token = browser.headers.pop("X-CSRF-Token")
    sid = new_id()
    assert (await browser.get("/api/sessions")).status_code == 200
    writes = [
        ("PUT", f"/api/sessions/{sid}", {"title": "t"}),
        ("PATCH", f"/api/sessions/{sid}", {"title": "renamed"}),
        ("DELETE", f"/api/sessions/{sid}", None),
    ]
    for method, path, body in writes:
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            refused = await browser.request(method, path, json=body, headers=headers)
            assert (refused.status_code, refused.json()["code"]) == (403, "csrf_failed"), method
    assert (await browser.get(f"/api/sessions/{sid}")).status_code == 404

    answers = []
    for method, path, body in writes:
        response = await browser.request(method, path, json=body, headers={"X-CSRF-Token": token})
        answers.append(response.status_code)
    assert answers == [201, 200, 204]


async def test_api_key_works_at_once_without_csrf_until_revoked(
    url: str, browser: httpx.AsyncClient
) -> None:
    """POST /api/auth/keys shows a ck_ key once; it works immediately for writes with no CSRF
    token, and not at all once revoked. TC-6.1 counterpart: an expired or revoked credential is
    a 401 problem with ``WWW-Authenticate``, the signal a client's refresh hook acts on."""
    created = await browser.post("/api/auth/keys", json={"name": "laptop"})
    assert created.status_code == 201
    key, prefix = created.json()["key"], created.json()["prefix"]
    assert key.startswith("ck_") and key.startswith(prefix)
    listed = (await browser.get("/api/auth/keys")).json()
    assert [(k["prefix"], k["revoked"]) for k in listed] == [(prefix, False)]
    assert key not in str(listed)

    bearer = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=bearer) as program:
        assert (await program.put(f"/api/sessions/{new_id()}", json={})).status_code == 201
        assert (await browser.delete(f"/api/auth/keys/{prefix}")).status_code == 204
        revoked = await program.get("/api/sessions")
        assert (revoked.status_code, revoked.json()["code"]) == (401, "unauthorized")
        assert revoked.headers["www-authenticate"].startswith("Bearer")
        forged = await program.get("/api/sessions", headers={"Authorization": "Bearer ck_forged"})
        assert forged.status_code == 401


async def test_login_rate_limit_answers_429_with_retry_after(
    url: str, browser: httpx.AsyncClient
) -> None:
    """G8: past login_attempts_per_minute, sign-in is 429 with Retry-After, even with the right
    password, so that guessing cannot go on at full speed."""
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(LOGIN_LIMIT):
            guess = await client.post("/api/auth/login", json={**ADMIN, "password": "a guess!"})
            assert guess.status_code == 401
        limited = await client.post("/api/auth/login", json=ADMIN)
        assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "chatkeep_session" not in client.cookies
