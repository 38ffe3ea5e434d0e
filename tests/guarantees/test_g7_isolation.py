"""G7 Isolation: every query is scoped to its user; another user's ids answer ``404``, exactly as
ids that do not exist (SPEC 2, G7).

alice keeps a chat (messages, an image, a finished reply) and an API key. bob then sends every
request the API has that names an id, once with ids that exist nowhere and once with alice's: the
two answers must be the same, byte for byte once the ids are blanked out, so that bob cannot even
learn that alice's ids exist. A control run with bob's own ids shows that each request is one that
works, so a 404 means "not yours" and not "malformed". The OpenAPI document is walked so that an
endpoint added later without a probe here fails this file.

TC-3.1 of the source report ("Multiple Users Same Session: not applicable, sessions are
user-specific") is this file: here it is not assumed, it is checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from support.factories import Account, new_id
from support.stack import Stack


def png(red: int, green: int, blue: int) -> bytes:
    """A real 1x1 PNG of one colour, built here so the test needs no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, red, green, blue]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


@dataclass
class Chat:
    """One user's chat, with every kind of id a request can name."""

    session_id: str
    title: str
    message_id: str  # a plain user message
    image_message_id: str  # a user message with an image
    reply_id: str  # a finished assistant reply
    sha256: str  # the image's blob
    prefix: str  # an API key's prefix
    texts: list[str] = field(default_factory=list)

    def ids(self) -> dict[str, str]:
        return {
            "session_id": self.session_id,
            "message_id": self.reply_id,
            "sha256": self.sha256,
            "prefix": self.prefix,
        }

    def secrets(self) -> set[str]:
        return {
            self.session_id,
            self.title,
            self.message_id,
            self.image_message_id,
            self.reply_id,
            self.sha256,
            self.prefix,
            *self.texts,
        }


async def make_chat(client: httpx.AsyncClient, name: str, image: bytes, prefix: str) -> Chat:
    tag = secrets.token_hex(6)
    chat = Chat(
        session_id=new_id(),
        title=f"{name}'s private chat {tag}",
        message_id=new_id(),
        image_message_id=new_id(),
        reply_id=new_id(),
        sha256=hashlib.sha256(image).hexdigest(),
        prefix=prefix,
        texts=[f"{name} secret question {tag}", f"{name} secret caption {tag}"],
    )
    body = {"title": chat.title, "model": "demo"}
    base = f"/api/sessions/{chat.session_id}"
    assert (await client.put(base, json=body)).status_code == 201
    first = {"role": "user", "content": chat.texts[0]}
    assert (await client.put(f"{base}/messages/{chat.message_id}", json=first)).status_code == 201
    parts = [
        {"type": "text", "text": chat.texts[1]},
        {"type": "image_url", "image_url": {"url": data_url(image)}},
    ]
    stored = await client.put(
        f"{base}/messages/{chat.image_message_id}", json={"role": "user", "content": parts}
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["content"][1]["image_url"]["url"] == f"/api/blobs/{chat.sha256}"
    reply = {"role": "assistant", "content": f"{name} secret answer {tag}", "model": "demo"}
    chat.texts.append(reply["content"])
    assert (await client.put(f"{base}/messages/{chat.reply_id}", json=reply)).status_code == 201
    # A second chat, pinned and archived, so that every filter of the list has something to hide.
    archived = {"title": f"{name}'s archived chat {tag}", "pinned": True, "archived": True}
    assert (await client.put(f"/api/sessions/{new_id()}", json=archived)).status_code == 201
    chat.texts.append(archived["title"])
    return chat


async def key_prefix(client: httpx.AsyncClient, account: Account) -> str:
    keys = (await client.get("/api/auth/keys")).json()
    (prefix,) = [k["prefix"] for k in keys if account.key.startswith(k["prefix"])]
    return str(prefix)


def nowhere() -> dict[str, str]:
    """Ids of the right shape that no user has."""
    return {
        "session_id": new_id(),
        "message_id": new_id(),
        "sha256": secrets.token_hex(32),
        "prefix": "ck_" + secrets.token_hex(4)[:7],
    }


@dataclass(frozen=True)
class Probe:
    """One request of the API that names ids, as its path appears in the OpenAPI document."""

    method: str
    path: str
    body: Callable[[], Any] | None = None
    # The request creates the message it names: its id is a fresh one, not an existing reply.
    creates_message: bool = False

    def url(self, ids: dict[str, str]) -> str:
        return self.path.format(**ids)


def _user_message() -> dict[str, Any]:
    return {"role": "user", "content": "bob writes here"}


PROBES = [
    Probe("GET", "/api/sessions/{session_id}"),
    Probe("PATCH", "/api/sessions/{session_id}", lambda: {"title": "bob was here", "pinned": True}),
    Probe("GET", "/api/sessions/{session_id}/messages"),
    Probe(
        "PUT",
        "/api/sessions/{session_id}/messages/{message_id}",
        _user_message,
        creates_message=True,
    ),
    Probe(
        "POST",
        "/api/sessions/{session_id}/messages:batch",
        lambda: {"messages": [{"id": new_id(), **_user_message()}]},
    ),
    Probe(
        "POST",
        "/api/sessions/{session_id}/turns",
        lambda: {"message": {"id": new_id(), "content": "bob asks"}, "model": "demo"},
    ),
    Probe("GET", "/api/sessions/{session_id}/messages/{message_id}/stream"),
    Probe("POST", "/api/sessions/{session_id}/messages/{message_id}/cancel"),
    Probe("GET", "/api/blobs/{sha256}"),
    Probe("DELETE", "/api/auth/keys/{prefix}"),
    # Last: in the control run it deletes bob's own chat, which the probes above still need.
    Probe("DELETE", "/api/sessions/{session_id}"),
]
# Creating a session with another user's id is not refused: it makes the caller's own session.
SCOPED_CREATE = ("PUT", "/api/sessions/{session_id}")


@dataclass
class World:
    stack: Stack
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    alice_chat: Chat
    bob_chat: Chat


@pytest.fixture
async def world(stack: Stack) -> AsyncIterator[World]:
    async with stack.client(stack.alice) as alice, stack.client(stack.bob) as bob:
        alice_chat = await make_chat(
            alice, "alice", png(255, 0, 0), await key_prefix(alice, stack.alice)
        )
        # bob's control revokes a key of his own: a spare one, so that he stays signed in.
        spare = await bob.post("/api/auth/keys", json={"name": "spare"})
        assert spare.status_code == 201
        bob_chat = await make_chat(bob, "bob", png(0, 0, 255), spare.json()["prefix"])
        yield World(stack, alice, bob, alice_chat, bob_chat)


async def send(client: httpx.AsyncClient, method: str, url: str, body: Any) -> httpx.Response:
    return await client.request(method, url, json=body)  # json=None: no body


def blanked(response: httpx.Response, ids: dict[str, str]) -> tuple[int, str, str]:
    """Status, content type and body, with the ids the request named replaced by their names."""
    text = response.text
    for name, value in ids.items():
        text = text.replace(value, "{" + name + "}")
    return response.status_code, response.headers.get("content-type", ""), text


def assert_no_leak(response: httpx.Response, secrets_: set[str], sent: str) -> None:
    """Nothing of alice's is in ``response`` beyond what bob himself put in the request."""
    leaked = {s for s in secrets_ if s in response.text and s not in sent}
    assert not leaked, f"bob was shown {leaked}: {response.text[:500]}"


async def snapshot(client: httpx.AsyncClient, chat: Chat) -> dict[str, Any]:
    base = f"/api/sessions/{chat.session_id}"
    blob = await client.get(f"/api/blobs/{chat.sha256}")
    listed = await client.get("/api/sessions", params={"limit": 200})
    archived = await client.get("/api/sessions", params={"archived": "true"})
    return {
        "session": (await client.get(base)).json(),
        "sync": (await client.get(f"{base}/messages")).json(),
        "blob": (blob.status_code, blob.headers.get("content-type"), blob.content),
        "list": listed.json(),
        "archived": archived.json(),
        "keys": (await client.get("/api/auth/keys")).json(),
    }


async def test_every_probe_answers_bob_as_if_alice_s_ids_did_not_exist(world: World) -> None:
    """bob gets for alice's ids exactly what he gets for ids that exist nowhere: 404, same
    problem code, same body; and nothing he is shown names anything of alice's."""
    alice_before = await snapshot(world.alice, world.alice_chat)
    assert alice_before["session"]["title"] == world.alice_chat.title
    assert len(alice_before["session"]["messages"]) == 3
    assert alice_before["blob"][0] == 200
    for probe in PROBES:
        body = probe.body() if probe.body else None
        ids_nowhere, ids_alice = nowhere(), world.alice_chat.ids()
        if probe.creates_message:
            ids_alice["message_id"] = ids_nowhere["message_id"]
        unknown = await send(world.bob, probe.method, probe.url(ids_nowhere), body)
        attack = await send(world.bob, probe.method, probe.url(ids_alice), body)

        where = f"{probe.method} {probe.path}"
        assert attack.status_code == 404, f"{where}: {attack.status_code} {attack.text[:300]}"
        assert attack.headers["content-type"] == "application/problem+json", where
        assert blanked(attack, ids_alice) == blanked(unknown, ids_nowhere), where
        assert_no_leak(attack, world.alice_chat.secrets(), probe.url(ids_alice) + json.dumps(body))

    # Nothing bob did reached alice's chat: not the PATCH, the appends, the turn, the DELETE.
    assert await snapshot(world.alice, world.alice_chat) == alice_before


async def test_every_probe_works_on_bob_s_own_ids(world: World) -> None:
    """The control: the very requests bob was refused succeed on his own chat, so the 404s
    above come from isolation, not from a malformed request."""
    for probe in PROBES:
        body = probe.body() if probe.body else None
        ids = world.bob_chat.ids()
        if probe.creates_message:
            ids["message_id"] = new_id()
        response = await send(world.bob, probe.method, probe.url(ids), body)
        assert response.status_code < 300, f"{probe.method} {probe.path}: {response.text[:300]}"


async def test_bob_s_ids_mixed_with_alice_s_answer_as_unknown_ids(world: World) -> None:
    """Alice's message id under bob's own session, and alice's ids inside bob's request bodies
    (parent, active leaf, image), are answered as ids that exist nowhere."""
    bob, alice_chat = world.bob, world.alice_chat
    own = f"/api/sessions/{world.bob_chat.session_id}"
    theirs, unknown_id = alice_chat.reply_id, new_id()
    # Ids of what each request would create: the same in both requests of a pair, since a
    # refused request creates nothing and the answer may name them.
    batch_item, turn_message = new_id(), new_id()
    unknown_sha = secrets.token_hex(32)

    def blob_part(sha: str) -> dict[str, Any]:
        parts = [{"type": "image_url", "image_url": {"url": f"/api/blobs/{sha}"}}]
        return {"role": "user", "content": parts}

    cases: list[tuple[str, str, Callable[[str, str], Any]]] = [
        ("GET", own + "?leaf_id={id}", lambda i, s: None),
        ("GET", own + "/messages/{id}/stream", lambda i, s: None),
        ("POST", own + "/messages/{id}/cancel", lambda i, s: None),
        ("PATCH", own, lambda i, s: {"active_leaf_id": i}),
        (
            "PUT",
            own + "/messages/" + new_id(),
            lambda i, s: {"role": "user", "content": "a branch", "parent_id": i},
        ),
        (
            "POST",
            own + "/messages:batch",
            lambda i, s: {"messages": [{"id": batch_item, **_user_message(), "parent_id": i}]},
        ),
        (
            "POST",
            own + "/turns",
            lambda i, s: {"message": {"id": turn_message, "content": "hi", "parent_id": i}},
        ),
        ("PUT", own + "/messages/" + new_id(), lambda i, s: blob_part(s)),
    ]
    for method, path, body_of in cases:
        unknown_body = body_of(unknown_id, unknown_sha)
        attack_body = body_of(theirs, alice_chat.sha256)
        unknown = await send(bob, method, path.format(id=unknown_id), unknown_body)
        attack = await send(bob, method, path.format(id=theirs), attack_body)
        # A path page that ends at an unknown leaf is empty, not an error; the rest refuse.
        refused = "leaf_id" not in path
        assert 400 <= attack.status_code < 500 or not refused, f"{path}: {attack.text[:300]}"
        names = {"id": theirs, "sha": alice_chat.sha256}
        assert blanked(attack, names) == blanked(unknown, {"id": unknown_id, "sha": unknown_sha}), (
            f"{method} {path}"
        )
        sent = path.format(id=theirs) + json.dumps(attack_body)
        assert_no_leak(attack, alice_chat.secrets(), sent)


async def test_bob_s_session_list_never_shows_alice_s_sessions(world: World) -> None:
    """The list, with every filter and a search for alice's exact title, shows bob only his."""
    queries: list[dict[str, Any]] = [
        {},
        {"archived": "true"},
        {"pinned": "true"},
        {"archived": "true", "pinned": "true"},
        {"q": world.alice_chat.title},
        {"q": "private"},
        {"limit": 200},
    ]
    for params in queries:
        response = await world.bob.get("/api/sessions", params=params)
        assert response.status_code == 200, params
        shown = response.json()["sessions"]
        assert all("bob" in s["title"] for s in shown), (params, shown)
        assert_no_leak(response, world.alice_chat.secrets(), json.dumps(params))
    # The same searches find alice's own sessions for her, so they are not empty by accident.
    mine = (await world.alice.get("/api/sessions", params={"q": world.alice_chat.title})).json()
    assert [s["id"] for s in mine["sessions"]] == [world.alice_chat.session_id]


async def test_bob_putting_alice_s_session_id_creates_his_own(world: World) -> None:
    """Ids are scoped per user: bob's PUT of alice's session id makes a separate session of
    his, with his fields, and leaves alice's session and list as they were."""
    alice_chat = world.alice_chat
    alice_before = await snapshot(world.alice, alice_chat)
    url = f"/api/sessions/{alice_chat.session_id}"

    created = await world.bob.put(url, json={"title": "bob's own"})
    assert created.status_code == 201, created.text
    assert created.json()["title"] == "bob's own"
    assert created.json()["last_seq"] == 0
    assert_no_leak(created, alice_chat.secrets(), url)
    replay = await world.bob.put(url, json={"title": "bob's own"})
    assert (replay.status_code, replay.json()) == (200, created.json())

    message = await world.bob.put(
        f"{url}/messages/{alice_chat.message_id}", json={"role": "user", "content": "bob's"}
    )
    assert message.status_code == 201, message.text
    assert message.json()["seq"] == 1
    bob_view = (await world.bob.get(url)).json()
    assert [m["content"] for m in bob_view["messages"]] == ["bob's"]
    listed = (await world.bob.get("/api/sessions", params={"q": "bob's own"})).json()
    assert [s["id"] for s in listed["sessions"]] == [alice_chat.session_id]

    assert await snapshot(world.alice, alice_chat) == alice_before


async def test_every_endpoint_with_an_id_has_a_probe(stack: Stack) -> None:
    """A new endpoint that takes an id must get a probe above (and so a G7 test)."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        document = (await client.get("/openapi.json")).json()
    with_ids = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if "{" in path
    }
    assert ("GET", "/api/sessions/{session_id}") in with_ids  # the walk sees the API
    covered = {(p.method, p.path) for p in PROBES} | {SCOPED_CREATE}
    assert with_ids - covered == set(), "endpoints without a G7 probe"
    assert covered - with_ids == set(), "probes for endpoints that no longer exist"
