"""Message content over real HTTP: long text kept exactly, limits answered clearly (G8), and
images stored once by content hash and served back only to their owner (G7)."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from chatkeep.store.engine import Database
from support.factories import new_id
from support.server import ServerThread
from support.stack import Stack


def tiny_png() -> bytes:
    """A real 1x1 red PNG, built here so the test needs no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def image_message(url: str, caption: str = "Check this out") -> dict[str, Any]:
    parts = [{"type": "text", "text": caption}, {"type": "image_url", "image_url": {"url": url}}]
    return {"role": "user", "content": parts}


async def new_session(api: httpx.AsyncClient) -> str:
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={})).status_code == 201
    return sid


async def last_seq(api: httpx.AsyncClient, sid: str) -> int:
    return int((await api.get(f"/api/sessions/{sid}")).json()["last_seq"])


async def test_50k_character_message_round_trips_exactly(api: httpx.AsyncClient) -> None:
    """TC-7.2: a 50,000-character message, with multi-byte characters, emoji, quotes,
    backslashes and line breaks, comes back character for character wherever it is read."""
    pattern = 'héllo wörld 👋 "quoted" back\\slash\ttab\r\nline ✓ '
    long_text = (pattern * (50_000 // len(pattern) + 1))[:50_000]
    sid, mid = await new_session(api), new_id()
    saved = await api.put(
        f"/api/sessions/{sid}/messages/{mid}", json={"role": "user", "content": long_text}
    )
    assert saved.status_code == 201
    session = (await api.get(f"/api/sessions/{sid}")).json()
    synced = (await api.get(f"/api/sessions/{sid}/messages")).json()
    for content in (saved.json()["content"], session["messages"][0]["content"]):
        assert content == long_text
    assert synced["messages"][0]["content"] == long_text


async def test_text_limit_is_one_million_characters(api: httpx.AsyncClient) -> None:
    """TC-7.2, G8: 1,000,000 characters are stored; one more is 422 invalid_content."""
    sid = await new_session(api)
    url = f"/api/sessions/{sid}/messages/{{}}"
    at_limit = await api.put(url.format(new_id()), json={"role": "user", "content": "a" * 10**6})
    over = await api.put(url.format(new_id()), json={"role": "user", "content": "a" * (10**6 + 1)})
    assert at_limit.status_code == 201
    assert (over.status_code, over.json()["code"]) == (422, "invalid_content")
    assert over.headers["content-type"].startswith("application/problem+json")
    assert await last_seq(api, sid) == 1


@pytest.fixture
async def small_body_api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """alice on a second server over the same database, accepting bodies up to 64 KiB."""
    server = ServerThread(stack.settings.model_copy(update={"max_body_bytes": 64 * 1024})).start()
    try:
        async with httpx.AsyncClient(
            base_url=server.url, headers=stack.alice.headers, timeout=30
        ) as client:
            yield client
    finally:
        server.stop()


async def test_body_over_max_body_bytes_is_413(small_body_api: httpx.AsyncClient) -> None:
    """G8: a body over max_body_bytes is 413 payload_too_large as problem+json, whether it
    announces its length or arrives chunked, and nothing of it is stored."""
    api = small_body_api
    sid = await new_session(api)
    body = b'{"role": "user", "content": "' + b"x" * 100_000 + b'"}'
    url = f"/api/sessions/{sid}/messages/{new_id()}"
    json_type = {"content-type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    sized = await api.put(url, content=body, headers=json_type)
    chunked = await api.put(url, content=chunks(), headers=json_type)
    for response in (sized, chunked):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "payload_too_large"
    assert await last_seq(api, sid) == 0


async def test_image_is_stored_once_and_served_back_with_auth(
    stack: Stack, api: httpx.AsyncClient, db_url: str
) -> None:
    """TC-7.4, G7: text + image is stored with the image replaced by /api/blobs/<sha256>;
    that URL serves the exact bytes as image/png to alice and 404 to bob; the same image sent
    again is the same blob, and bob cannot point a message of his at alice's image."""
    png = tiny_png()
    blob_url = f"/api/blobs/{hashlib.sha256(png).hexdigest()}"
    sid, mid = await new_session(api), new_id()
    message = image_message(data_url("image/png", png))
    saved = await api.put(f"/api/sessions/{sid}/messages/{mid}", json=message)
    assert saved.status_code == 201, saved.text
    expected = [message["content"][0], {"type": "image_url", "image_url": {"url": blob_url}}]
    assert saved.json()["content"] == expected
    history = await api.get(f"/api/sessions/{sid}")
    assert history.json()["messages"][0]["content"] == expected
    assert b"data:" not in history.content

    image = await api.get(blob_url)
    assert (image.status_code, image.content) == (200, png)
    assert image.headers["content-type"] == "image/png"
    again = await api.put(f"/api/sessions/{sid}/messages/{new_id()}", json=message)
    assert again.json()["content"] == expected
    replay = await api.put(f"/api/sessions/{sid}/messages/{mid}", json=message)
    assert replay.status_code == 200

    async with stack.client(stack.bob) as bob:
        assert (await bob.get(blob_url)).status_code == 404
        his = await new_session(bob)
        borrowed = await bob.put(
            f"/api/sessions/{his}/messages/{new_id()}", json=image_message(blob_url)
        )
        assert (borrowed.status_code, borrowed.json()["code"]) == (422, "invalid_image")

    db = Database(db_url)
    try:
        blobs = await db.read(lambda conn: conn.scalar(text("SELECT count(*) FROM blobs")))
    finally:
        await db.dispose()
    assert blobs == 1


async def test_bad_images_are_refused(api: httpx.AsyncClient) -> None:
    """G8, TC-7.4: an image whose bytes are not of its declared type, a type that is not an
    image, or data that is not base64, is 422 invalid_image and nothing is stored."""
    sid = await new_session(api)
    bad = {
        "jpeg declared as png": data_url("image/png", JPEG),
        "not an image": data_url("text/plain", b"hello"),
        "not base64": "data:image/png;base64,@@@not-base64@@@",
        "not a data URL": "data:image/png," + tiny_png().hex(),
    }
    answers = {}
    for name, url in bad.items():
        response = await api.put(
            f"/api/sessions/{sid}/messages/{new_id()}", json=image_message(url)
        )
        answers[name] = (response.status_code, response.json()["code"])
    assert answers == dict.fromkeys(bad, (422, "invalid_image"))
    assert await last_seq(api, sid) == 0
