"""What the security tests share: the API's operations read from its OpenAPI document, a
minimal valid body for each, a victim's chat with every kind of id, and direct SQL on the test
database (to expire a sign-in the way time would)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from support.factories import new_id

# Operations that answer without credentials, by design. Every other operation in the OpenAPI
# document must refuse each kind of bad credential: an endpoint added later is in the matrix
# without an edit here, and one that forgets ``CurrentUser`` fails it.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/auth/status"),
    ("POST", "/api/auth/setup"),
    ("POST", "/api/auth/login"),
}
_SAFE = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    schema: dict[str, Any]  # the body's JSON schema, or {} when the operation takes none
    path_params: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def unsafe(self) -> bool:
        return self.method not in _SAFE


def operations(document: dict[str, Any]) -> list[Operation]:
    found = []
    for path, items in document["paths"].items():
        for method, op in items.items():
            if method.upper() not in {"GET", "PUT", "POST", "PATCH", "DELETE"}:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            params = tuple(p["name"] for p in op.get("parameters", []) if p["in"] == "path")
            found.append(Operation(method.upper(), path, body.get("schema", {}), params))
    return found


def minimal(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    """The smallest value that the schema accepts: required fields only, first enum member."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return minimal(document["components"]["schemas"][name], document)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return minimal(options[0], document)
    if "allOf" in schema:
        return minimal(schema["allOf"][0], document)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal(props.get(name, {}), document) for name in schema.get("required", [])}
    if kind == "array":
        count = schema.get("minItems", 0)
        return [minimal(schema.get("items", {}), document) for _ in range(count)]
    if kind == "string":
        if schema.get("format") == "uuid":
            return new_id()
        return "x" * max(1, schema.get("minLength", 1))
    if kind in {"integer", "number"}:
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return None


def png(red: int, green: int, blue: int) -> bytes:
    """A real 1x1 PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, red, green, blue]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@dataclass
class Chat:
    """A user's chat, with a value for every path parameter the API has."""

    ids: dict[str, str]
    secrets: set[str] = field(default_factory=set)


async def make_chat(client: httpx.AsyncClient, name: str) -> Chat:
    tag = secrets.token_hex(6)
    sid, mid, rid = new_id(), new_id(), new_id()
    image = png(secrets.randbelow(256), 7, 9)
    base = f"/api/sessions/{sid}"
    title = f"{name}'s private chat {tag}"
    assert (await client.put(base, json={"title": title, "model": "demo"})).status_code == 201
    text = f"{name} secret question {tag}"
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
    stored = await client.put(f"{base}/messages/{mid}", json={"role": "user", "content": parts})
    assert stored.status_code == 201, stored.text
    answer = f"{name} secret answer {tag}"
    reply = {"role": "assistant", "content": answer, "model": "demo", "parent_id": mid}
    assert (await client.put(f"{base}/messages/{rid}", json=reply)).status_code == 201
    keys = (await client.get("/api/auth/keys")).json()
    ids = {
        "session_id": sid,
        "message_id": rid,
        "sha256": hashlib.sha256(image).hexdigest(),
        "prefix": keys[0]["prefix"],
    }
    return Chat(ids, {title, text, answer, sid, mid, rid, ids["sha256"]})


def nowhere() -> dict[str, str]:
    """Ids of the right shape that no user has."""
    return {
        "session_id": new_id(),
        "message_id": new_id(),
        "sha256": secrets.token_hex(32),
        "prefix": "ck_" + secrets.token_hex(4)[:7],
    }


def fill(path: str, ids: dict[str, str]) -> str:
    """The path with its parameters replaced; a parameter no chat has gets a fresh UUID."""
    values = dict(ids)
    while "{" in path:
        name = path[path.index("{") + 1 : path.index("}")]
        path = path.replace("{" + name + "}", values.setdefault(name, str(uuid.uuid4())))
    return path


async def snapshot(client: httpx.AsyncClient, chat: Chat) -> dict[str, Any]:
    """Everything a user can read of a chat, to compare before and after an attack."""
    base = f"/api/sessions/{chat.ids['session_id']}"
    blob = await client.get(f"/api/blobs/{chat.ids['sha256']}")
    return {
        "session": (await client.get(base)).json(),
        "sync": (await client.get(f"{base}/messages")).json(),
        "blob": (blob.status_code, blob.content),
        "list": (await client.get("/api/sessions", params={"limit": 200})).json(),
        "keys": (await client.get("/api/auth/keys")).json(),
    }


async def execute(db_url: str, sql: str) -> None:
    """One statement on the test database, outside chatkeep (what a clock or an admin does)."""
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.split("///", 1)[1]) as conn:
            conn.execute(sql)
        return
    parts = urlsplit(db_url)
    conn = await asyncpg.connect(
        host=parts.hostname,
        port=parts.port,
        user=parts.username,
        password=parts.password,
        database=parts.path.lstrip("/"),
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
