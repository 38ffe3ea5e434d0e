"""The prompt is built on the server from the stored path, root to the user's message (G3):
never from the client's copy, so a stale client cannot drop context (source report ISSUE 5)."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import Connection, Row

from chatkeep.store import content, messages


def build_prompt(conn: Connection, session: Row[Any], user_message_id: str) -> list[dict[str, Any]]:
    path = messages.active_path(conn, session, leaf_id=user_message_id)
    prompt = []
    for message in path:
        if message["status"] == "streaming" or not message["content"]:
            continue
        body = _inline_images(conn, session.user_pk, message["content"])
        prompt.append({"role": message["role"], "content": body})
    return prompt


def _inline_images(conn: Connection, user_pk: int, body: Any) -> Any:
    """Stored images are blob references; the model gets them back as data: URLs."""
    if not isinstance(body, list):
        return body
    parts = []
    for part in body:
        match = content.BLOB_URL.match(part.get("image_url", {}).get("url", ""))
        if part.get("type") == "image_url" and match:
            found = content.get_blob(conn, user_pk, match["sha"])
            if found is None:
                continue
            media_type, data = found
            url = f"data:{media_type};base64,{base64.b64encode(data).decode()}"
            part = {"type": "image_url", "image_url": {"url": url}}
        parts.append(part)
    return parts
