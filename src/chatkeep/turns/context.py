"""The prompt is built on the server from the stored path, root to the user's message (G3):
never from the client's copy, so a stale client cannot drop context (source report ISSUE 5).

Its roles alternate whatever the tree holds (issue 8, item 2): chat templates such as Mistral's
and Gemma's on vLLM, and Anthropic's API, refuse two user messages in a row, which is what a
failed reply with no text would otherwise leave behind, breaking every later turn of the chat.
"""

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
    return alternating(prompt)


def alternating(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System messages first (merged into one), then user and assistant taking turns, starting
    with a user message: same-role neighbours are merged, not dropped, so no context is lost;
    an assistant message before any user message (an imported greeting) has nothing to answer
    and is left out. Replies with no text never get here (``build_prompt`` skips them)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "system":
            system = [_merged(system[0], message)] if system else [dict(message)]
        elif turns and turns[-1]["role"] == message["role"]:
            turns[-1] = _merged(turns[-1], message)
        elif turns or message["role"] == "user":
            turns.append(dict(message))
    return system + turns


def _merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    a, b = first["content"], second["content"]
    if isinstance(a, str) and isinstance(b, str):
        return {"role": first["role"], "content": f"{a}\n\n{b}"}
    return {"role": first["role"], "content": _parts(a) + _parts(b)}


def _parts(body: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": body}] if isinstance(body, str) else list(body)


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
