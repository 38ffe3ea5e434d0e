"""The cache merge of ``sessions.get`` (SPEC 6.1, TC-4.1, TC-4.3): the server's active path with
the client's own queued messages of that session after it, merged by id.

The source report's cache lost an optimistic message when a refetch replaced the list (TC-4.1)
and showed it twice when the saved copy came back under another id (TC-4.3). Here the id is the
client's from the start, so "the server has confirmed it" is simply "the server's page holds that
id": the server's copy wins, the queued copy stays until then, and nothing is keyed by position.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatkeep.client._calls import queued_message
from chatkeep.client._models import Message, OutboxEntry, Session


def queued_messages(entries: Sequence[OutboxEntry]) -> list[Message]:
    """The messages of queued writes, in queue order."""
    found: list[Message] = []
    for entry in entries:
        body = entry.body.get("json") or {}
        if entry.kind == "message":
            found.append(queued_message(entry.session_id, entry.id, body))
        elif entry.kind == "batch":
            found.extend(queued_message(entry.session_id, m["id"], m) for m in body["messages"])
    return found


def merge(server: Sequence[Message], queued: Sequence[Message]) -> list[Message]:
    """Server messages by ``seq``, then queued ones the server does not hold yet; each id once."""
    merged: dict[str, Message] = {}
    for message in sorted(server, key=lambda m: m.seq or 0):
        merged.setdefault(message.id, message)
    for message in queued:
        merged.setdefault(message.id, message)
    return list(merged.values())


def with_queued(session: Session, entries: Sequence[OutboxEntry]) -> Session:
    mine = [e for e in entries if e.session_id == session.id]
    return session.model_copy(update={"messages": merge(session.messages, queued_messages(mine))})


def queued_session(session_id: str, entries: Sequence[OutboxEntry]) -> Session | None:
    """A session whose create is still queued, with its queued messages (offline, TC-6.3)."""
    for entry in entries:
        if entry.kind == "session" and entry.id == session_id:
            body = entry.body.get("json") or {}
            session = Session(
                id=session_id,
                title=body.get("title") or "",
                model=body.get("model"),
                status="queued",
            )
            return with_queued(session, entries)
    return None
