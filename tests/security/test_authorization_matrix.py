"""The authorization matrix (SPEC 2, G7): every operation of the OpenAPI document × every kind of
bad credential → ``401``/``403``, and another user's ids → ``404`` exactly like ids that exist
nowhere; the victim's data is unchanged at the end.

The operations are read from the live server's ``/openapi.json``, so an endpoint added later is
in the matrix without an edit here; only the deliberately public ones are listed (``PUBLIC``).
A revoked key stops working at once on every worker of a multi-worker server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from authkit import (
    PUBLIC,
    Chat,
    Operation,
    execute,
    fill,
    make_chat,
    minimal,
    nowhere,
    operations,
    snapshot,
)

from support.factories import make_accounts
from support.server import ServerProcess
from support.stack import Stack


@dataclass
class World:
    document: dict[str, Any]
    alice: httpx.AsyncClient
    alice_chat: Chat
    bob: httpx.AsyncClient
    # Credentials that must be refused, each as the headers/cookies a client would send.
    revoked_key: str
    expired_cookie: str
    live_cookie: str  # bob's valid sign-in, for the CSRF cases
    live_csrf: str
    url: str


async def sign_in(url: str, name: str, password: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/api/auth/login", json={"name": name, "password": password})
        assert response.status_code == 200, response.text
        return response.cookies["chatkeep_session"], response.json()["csrf_token"]


@pytest.fixture
async def world(stack: Stack) -> AsyncIterator[World]:
    async with stack.client(stack.alice) as alice, stack.client(stack.bob) as bob:
        document = (await alice.get("/openapi.json")).json()
        alice_chat = await make_chat(alice, "alice")
        await make_chat(bob, "bob")
        spare = (await bob.post("/api/auth/keys", json={"name": "soon revoked"})).json()
        assert (await bob.delete(f"/api/auth/keys/{spare['prefix']}")).status_code == 204
        expired, _ = await sign_in(stack.url, stack.bob.name, stack.bob.password)
        # Time passes for that one sign-in only: the row says it expired a minute ago.
        await execute(
            stack.settings.resolved_database_url,
            "UPDATE web_sessions SET expires_at = CURRENT_TIMESTAMP - INTERVAL '1 minute'"
            if not stack.settings.is_sqlite
            else "UPDATE web_sessions SET expires_at = datetime('now', '-1 minute')",
        )
        cookie, csrf = await sign_in(stack.url, stack.bob.name, stack.bob.password)
        yield World(
            document, alice, alice_chat, bob, spare["key"], expired, cookie, csrf, stack.url
        )


def body_for(op: Operation, document: dict[str, Any]) -> Any:
    return minimal(op.schema, document) if op.schema else None


async def call(
    url: str,
    op: Operation,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, headers=headers, cookies=cookies) as client:
        return await client.request(op.method, path, json=body, timeout=30)


def refused(response: httpx.Response, status: int, code: str) -> str | None:
    """None when ``response`` is the expected problem, else what was wrong with it."""
    if response.status_code != status:
        return f"{response.status_code} {response.text[:200]}"
    if response.headers.get("content-type") != "application/problem+json":
        return f"content type {response.headers.get('content-type')}"
    if response.json().get("code") != code:
        return f"code {response.json().get('code')}"
    return None


async def test_every_operation_refuses_every_bad_credential(world: World) -> None:
    before = await snapshot(world.alice, world.alice_chat)
    ops = [op for op in operations(world.document) if (op.method, op.path) not in PUBLIC]
    assert len(ops) >= 15, "the OpenAPI document lost its operations"
    stale = PUBLIC - {(op.method, op.path) for op in operations(world.document)}
    assert not stale, f"PUBLIC names operations that no longer exist: {stale}"
    failures: list[str] = []
    for op in ops:
        # alice's real ids: were the credential check after the lookup, her data would answer.
        path, body = fill(op.path, world.alice_chat.ids), body_for(op, world.document)
        cases: list[tuple[str, dict[str, str], dict[str, str], int, str]] = [
            ("no credentials", {}, {}, 401, "unauthorized"),
            ("wrong key", {"Authorization": "Bearer ck_" + "x" * 43}, {}, 401, "unauthorized"),
            ("not a bearer key", {"Authorization": "Basic Ym9iOmJvYg=="}, {}, 401, "unauthorized"),
            (
                "revoked key",
                {"Authorization": f"Bearer {world.revoked_key}"},
                {},
                401,
                "unauthorized",
            ),
            ("expired cookie", {}, {"chatkeep_session": world.expired_cookie}, 401, "unauthorized"),
            ("forged cookie", {}, {"chatkeep_session": "forged"}, 401, "unauthorized"),
        ]
        if op.unsafe:
            live = {"chatkeep_session": world.live_cookie}
            cases += [
                ("cookie without CSRF header", {}, live, 403, "csrf_failed"),
                (
                    "cookie with a wrong CSRF header",
                    {"X-CSRF-Token": "no"},
                    live,
                    403,
                    "csrf_failed",
                ),
            ]
        for name, headers, cookies, status, code in cases:
            response = await call(world.url, op, path, body, headers, cookies)
            problem = refused(response, status, code)
            if problem:
                failures.append(f"{op.label} with {name}: {problem}")
    assert not failures, "\n".join(failures)
    assert await snapshot(world.alice, world.alice_chat) == before


def blanked(response: httpx.Response, ids: dict[str, str]) -> tuple[int, str]:
    text = response.text
    for name, value in ids.items():
        text = text.replace(value, "{" + name + "}")
    return response.status_code, text


def attack_order(op: Operation) -> tuple[int, int]:
    """Creating PUTs last, deepest first: bob's PUT of alice's session id makes *his own*
    session of that id (ids are scoped per user), after which the id is no longer alice's only."""
    return (op.method == "PUT", -op.path.count("/"))


async def test_another_user_s_ids_answer_like_ids_that_do_not_exist(world: World) -> None:
    """bob, signed in, names alice's ids in every operation that takes one: the answer is the
    answer for ids that exist nowhere (404, same body), it shows nothing of hers, and she finds
    her chat as it was."""
    before = await snapshot(world.alice, world.alice_chat)
    ops = [op for op in operations(world.document) if op.path_params]
    ops.sort(key=attack_order)
    assert len(ops) >= 8
    failures: list[str] = []
    for op in ops:
        body = body_for(op, world.document)
        other, theirs = nowhere(), dict(world.alice_chat.ids)
        if op.method == "PUT" and len(op.path_params) > 1:
            # A create under alice's resource: a fresh id for the thing it would create.
            last = op.path_params[-1]
            theirs[last] = other[last]
        unknown = await world.bob.request(op.method, fill(op.path, other), json=body)
        attack = await world.bob.request(op.method, fill(op.path, theirs), json=body)
        sent = fill(op.path, theirs) + json.dumps(body)
        leaked = {s for s in world.alice_chat.secrets if s in attack.text and s not in sent}
        if leaked:
            failures.append(f"{op.label}: bob was shown {leaked}")
        if op.method == "PUT" and len(op.path_params) == 1 and attack.status_code == 201:
            continue  # a create-if-absent of a top-level resource makes bob's own (G7)
        if attack.status_code != 404:
            failures.append(f"{op.label}: {attack.status_code} {attack.text[:200]}")
        elif blanked(attack, theirs) != blanked(unknown, other):
            failures.append(f"{op.label}: alice's ids answer differently from unknown ids")
    assert not failures, "\n".join(failures)
    assert await snapshot(world.alice, world.alice_chat) == before


@pytest.mark.slow
async def test_a_revoked_key_stops_at_once_on_every_worker(db_url: str, tmp_path: Any) -> None:
    """Each request is a new connection, so the workers share them out; none may still accept
    the key after the revoke answered (no per-process cache of keys)."""
    accounts = await make_accounts(db_url, "carol")
    env = {
        "CHATKEEP_DATABASE_URL": db_url,
        "CHATKEEP_DATA_DIR": str(tmp_path / "data"),
        "CHATKEEP_DEMO_MODEL": "true",
        "CHATKEEP_OLLAMA_AUTODETECT": "false",
        "CHATKEEP_RATE_LIMIT_PER_MINUTE": "0",
    }
    server = ServerProcess(env, workers=3, log_path=tmp_path / "server.log").start(timeout=90)
    try:
        carol = {"Authorization": f"Bearer {accounts['carol'].key}"}
        async with httpx.AsyncClient(base_url=server.url, headers=carol) as client:
            spare = (await client.post("/api/auth/keys", json={"name": "spare"})).json()
        doomed = {"Authorization": f"Bearer {spare['key']}"}

        async def status(headers: dict[str, str]) -> int:
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as fresh:
                return (await fresh.get("/api/sessions")).status_code

        assert [await status(doomed) for _ in range(12)] == [200] * 12  # every worker knows it
        async with httpx.AsyncClient(base_url=server.url, headers=carol) as client:
            revoked = await client.delete(f"/api/auth/keys/{spare['prefix']}")
            assert revoked.status_code == 204
        assert [await status(doomed) for _ in range(30)] == [401] * 30
        assert await status(carol) == 200  # her other key is untouched
    finally:
        server.stop()
