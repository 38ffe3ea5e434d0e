"""Account lifecycle: an admin disables an account (its keys and sign-ins stop at once, its data
stays), deletes one with all its chats, images and keys (``chatkeep users delete``), and a user
exports all of their data as one JSON archive (``GET /api/account/export``,
``chatkeep users export``). Both databases; the other user is untouched throughout."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys

import httpx
from authkit import make_chat, snapshot

from chatkeep.store.engine import Database
from support.factories import new_id
from support.server import REPO
from support.stack import Stack


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHATKEEP_DATABASE_URL": stack.settings.resolved_database_url}
    return subprocess.run(
        [sys.executable, "-m", "chatkeep.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def sign_in(stack: Stack, name: str, password: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        return await client.post("/api/auth/login", json={"name": name, "password": password})


async def test_a_disabled_account_stops_at_once_and_keeps_its_data(stack: Stack) -> None:
    alice = stack.alice
    signed_in = await sign_in(stack, alice.name, alice.password)
    assert signed_in.status_code == 200
    cookie = {"chatkeep_session": signed_in.cookies["chatkeep_session"]}
    async with stack.client(alice) as client:
        chat = await make_chat(client, "alice")
        before = await snapshot(client, chat)

    done = cli(stack, "users", "disable", alice.name)
    assert done.returncode == 0, done.stderr
    async with httpx.AsyncClient(base_url=stack.url) as anonymous:
        with_key = await anonymous.get("/api/sessions", headers=alice.headers)
    async with httpx.AsyncClient(base_url=stack.url, cookies=cookie) as browser:
        with_cookie = await browser.get("/api/sessions")
    assert (with_key.status_code, with_cookie.status_code) == (401, 401)
    assert (await sign_in(stack, alice.name, alice.password)).status_code == 401
    async with stack.client(stack.bob) as bob:
        assert (await bob.get("/api/sessions")).status_code == 200
    listed = cli(stack, "users", "list")
    assert "alice" in listed.stdout and "yes" in listed.stdout

    done = cli(stack, "users", "enable", alice.name)
    assert done.returncode == 0, done.stderr
    async with stack.client(alice) as client:
        assert await snapshot(client, chat) == before  # nothing was lost while disabled
    assert (await sign_in(stack, alice.name, alice.password)).status_code == 200


async def count_rows(db_url: str, user_pk: int) -> dict[str, int]:
    from sqlalchemy import text

    db = Database(db_url)
    try:
        counts = {}
        for name in ("sessions", "messages", "blobs", "api_keys", "web_sessions"):
            sql = text(f"SELECT count(*) FROM {name} WHERE user_pk = :pk")
            counts[name] = int(await db.read(lambda c, s=sql: c.scalar(s, {"pk": user_pk})))
        return counts
    finally:
        await db.dispose()


async def user_pk(db_url: str, name: str) -> int:
    from sqlalchemy import text

    db = Database(db_url)
    try:
        sql = text("SELECT pk FROM users WHERE name = :n")
        return int(await db.read(lambda c: c.scalar(sql, {"n": name})))
    finally:
        await db.dispose()


async def test_deleting_an_account_removes_everything_of_it(stack: Stack) -> None:
    url = stack.settings.resolved_database_url
    alice_pk = await user_pk(url, stack.alice.name)
    assert (await sign_in(stack, stack.alice.name, stack.alice.password)).status_code == 200
    async with stack.client(stack.alice) as alice, stack.client(stack.bob) as bob:
        await make_chat(alice, "alice")
        bob_chat = await make_chat(bob, "bob")
        bob_before = await snapshot(bob, bob_chat)
    assert all((await count_rows(url, alice_pk)).values())

    done = cli(stack, "users", "delete", stack.alice.name, "--yes")
    assert done.returncode == 0, done.stderr
    assert await count_rows(url, alice_pk) == dict.fromkeys(
        ("sessions", "messages", "blobs", "api_keys", "web_sessions"), 0
    )
    async with httpx.AsyncClient(base_url=stack.url) as anonymous:
        assert (
            await anonymous.get("/api/sessions", headers=stack.alice.headers)
        ).status_code == 401
    async with stack.client(stack.bob) as bob:
        assert await snapshot(bob, bob_chat) == bob_before
    audit = cli(stack, "audit")
    assert audit.returncode == 0, audit.stdout


async def test_a_user_exports_all_of_their_data(stack: Stack) -> None:
    async with stack.client(stack.alice) as alice, stack.client(stack.bob) as bob:
        chat = await make_chat(alice, "alice")
        sid = chat.ids["session_id"]
        # A branch: an edit beside the first message, so the export must hold every branch.
        edit = new_id()
        put = await alice.put(
            f"/api/sessions/{sid}/messages/{edit}",
            json={"role": "user", "content": "an edit", "parent_id": None},
        )
        assert put.status_code == 201, put.text
        archived = new_id()
        assert (
            await alice.put(f"/api/sessions/{archived}", json={"archived": True})
        ).status_code == 201
        gone = new_id()
        assert (
            await alice.put(f"/api/sessions/{gone}", json={"title": "deleted"})
        ).status_code == 201
        assert (await alice.delete(f"/api/sessions/{gone}")).status_code == 204
        await make_chat(bob, "bob")
        response = await alice.get("/api/account/export")
    assert response.status_code == 200, response.text
    assert "attachment" in response.headers["content-disposition"]
    archive = response.json()
    assert archive["format"] == "chatkeep-export" and archive["user"]["name"] == stack.alice.name
    by_id = {s["id"]: s for s in archive["sessions"]}
    assert set(by_id) == {sid, archived}  # deleted chats are gone; bob's are not alice's
    messages = {m["id"]: m for m in by_id[sid]["messages"]}
    assert edit in messages and chat.ids["message_id"] in messages
    assert [m["seq"] for m in by_id[sid]["messages"]] == sorted(m["seq"] for m in messages.values())
    (blob,) = archive["blobs"]
    assert hashlib.sha256(base64.b64decode(blob["data_base64"])).hexdigest() == chat.ids["sha256"]
    text = response.text
    assert stack.alice.key not in text and stack.alice.password not in text and "bob" not in text
    assert "key_hash" not in text and "password" not in text

    done = cli(stack, "users", "export", stack.alice.name)
    assert done.returncode == 0, done.stderr
    from_cli = json.loads(done.stdout)
    assert {s["id"] for s in from_cli["sessions"]} == {sid, archived}
    assert from_cli["blobs"] == archive["blobs"]
