"""A better title from the model, after a chat's first reply (``CHATKEEP_TITLE_FROM_MODEL``).

The first title is set from the first message at once, in the turn's own transaction; this one
replaces it only if nobody renamed the chat meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, update

from chatkeep.providers.base import Provider, ProviderError
from chatkeep.store.engine import Database
from chatkeep.store.replies import title_from
from chatkeep.store.tables import ChatSession, table

log = logging.getLogger("chatkeep.turns")
S = table(ChatSession)
PROMPT = (
    "Write a short title (at most six words, no quotes, no final period) for a chat that "
    "starts like this:"
)


async def improve_title(
    db: Database,
    provider: Provider,
    model: str,
    *,
    session_pk: int,
    first_message: Any,
    reply: str,
) -> str | None:
    asked = title_from(first_message, limit=2000)
    messages = [
        {"role": "user", "content": f"{PROMPT}\n\nUser: {asked}\n\nAssistant: {reply[:2000]}"}
    ]
    parts: list[str] = []
    try:
        async for chunk in provider.stream_chat(model=model, messages=messages):
            parts.append(chunk.text)
    except ProviderError as exc:
        log.info("no title from the model: %s", exc)
        return None
    title = " ".join("".join(parts).split()).strip("\"'. ")[:80]
    if not title:
        return None
    automatic = title_from(first_message)

    def work(conn: Connection) -> int:
        result = conn.execute(
            update(S)
            .where(S.c.pk == session_pk, S.c.title == automatic, S.c.deleted_at.is_(None))
            .values(title=title)
        )
        return int(result.rowcount)

    return title if await db.write(work) else None
