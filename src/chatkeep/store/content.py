"""Message content: a string, or OpenAI-style parts. Images are stored once, by content hash,
and referred to by ``/api/blobs/<sha256>`` so that history loads never re-send them inline."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from chatkeep.problems import InvalidContent, InvalidImage
from chatkeep.store.tables import Blob, table

B = table(Blob)
BLOB_URL = re.compile(r"^/api/blobs/(?P<sha>[0-9a-f]{64})$")
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<b64>;base64)?,(?P<data>.*)$", re.S)
# What each accepted image type starts with; the declared type must match the bytes.
_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


@dataclass(frozen=True)
class ContentLimits:
    max_parts: int = 32
    max_image_bytes: int = 8 * 1024 * 1024
    max_text_chars: int = 1_000_000


@dataclass(frozen=True)
class NewBlob:
    sha256: str
    media_type: str
    data: bytes


def normalize_content(content: Any, limits: ContentLimits) -> tuple[Any, list[NewBlob]]:
    """Validate content and replace inline images by blob references. Pure: no I/O."""
    if isinstance(content, str):
        _check_text(content, limits)
        return content, []
    if not isinstance(content, list) or not content:
        raise InvalidContent("content must be a string or a non-empty list of parts")
    if len(content) > limits.max_parts:
        raise InvalidContent(f"at most {limits.max_parts} content parts", field="content")
    parts: list[dict[str, Any]] = []
    blobs: list[NewBlob] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            _check_text(part["text"], limits)
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            url = part["image_url"].get("url")
            if not isinstance(url, str):
                raise InvalidImage(f"part {index}: image_url.url must be a string")
            url, blob = _image_url(url, index, limits)
            if blob is not None:
                blobs.append(blob)
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise InvalidContent(f"part {index}: expected a text or image_url part")
    return parts, blobs


def _check_text(text: str, limits: ContentLimits) -> None:
    if len(text) > limits.max_text_chars:
        raise InvalidContent(f"text longer than {limits.max_text_chars} characters")
    if "\x00" in text:
        raise InvalidContent("text may not contain NUL characters")


def _image_url(url: str, index: int, limits: ContentLimits) -> tuple[str, NewBlob | None]:
    if BLOB_URL.match(url) or url.startswith(("https://", "http://")):
        return url, None
    match = _DATA_URL.match(url)
    if match is None or not match["b64"]:
        raise InvalidImage(f"part {index}: expected a base64 data: URL or an https URL")
    media_type = (match["type"] or "").lower()
    if media_type not in _MAGIC:
        raise InvalidImage(f"part {index}: image type must be one of {', '.join(_MAGIC)}")
    if len(match["data"]) > limits.max_image_bytes * 4 // 3 + 4:
        raise InvalidImage(f"part {index}: image larger than {limits.max_image_bytes} bytes")
    try:
        data = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"part {index}: image data is not valid base64") from exc
    if len(data) > limits.max_image_bytes:
        raise InvalidImage(f"part {index}: image larger than {limits.max_image_bytes} bytes")
    if not data.startswith(_MAGIC[media_type]):
        raise InvalidImage(f"part {index}: the bytes are not a {media_type} image")
    sha = hashlib.sha256(data).hexdigest()
    return f"/api/blobs/{sha}", NewBlob(sha, media_type, data)


def blob_refs(content: Any) -> list[str]:
    """The blob hashes a normalized content refers to."""
    if not isinstance(content, list):
        return []
    found = []
    for part in content:
        if part.get("type") == "image_url":
            match = BLOB_URL.match(part["image_url"]["url"])
            if match:
                found.append(match["sha"])
    return found


def put_blobs(conn: Connection, user_pk: int, blobs: list[NewBlob]) -> None:
    for blob in blobs:
        values = {
            "user_pk": user_pk,
            "sha256": blob.sha256,
            "media_type": blob.media_type,
            "data": blob.data,
        }
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(B).values(values).on_conflict_do_nothing()
        conn.execute(stmt)


def check_blob_refs(conn: Connection, user_pk: int, content: Any) -> None:
    """A message may only point at images its own user uploaded (G7)."""
    for sha in blob_refs(content):
        found = conn.scalar(select(B.c.pk).where(B.c.user_pk == user_pk, B.c.sha256 == sha))
        if found is None:
            raise InvalidImage(f"no uploaded image {sha}")


def get_blob(conn: Connection, user_pk: int, sha: str) -> tuple[str, bytes] | None:
    row = (
        conn.execute(
            select(B.c.media_type, B.c.data).where(B.c.user_pk == user_pk, B.c.sha256 == sha)
        )
    ).first()
    return (row.media_type, row.data) if row is not None else None
