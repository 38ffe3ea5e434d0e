"""Assistant replies that are being generated: started with their user message in one
transaction, checkpointed under a lease, finished once, and reaped when their owner died (G2, G4).

A reply is a row from its first token (``streaming``). The process generating it holds a lease
(``lease_owner``, ``lease_expires_at``) that its checkpoints renew; when a process dies its
leases run out and ``reap_expired`` marks those replies ``interrupted``, keeping their text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, update

from chatkeep.problems import GenerationInProgress, IdempotencyConflict, NotFound
from chatkeep.store.hashing import request_hash
from chatkeep.store.messages import (
    NewMessage,
    find_message,
    insert_once,
    message_public,
    replay_or_conflict,
    resolve_parent,
)
from chatkeep.store.sessions import create_session_once, live_session, session_public
from chatkeep.store.tables import ChatSession, Message, table, utcnow

S = table(ChatSession)
M = table(Message)
FINAL = ("complete", "error", "cancelled", "interrupted")


@dataclass
class Turn:
    """What ``start_turn`` decided: a new generation, or a replay of an earlier one."""

    created: bool
    session: dict[str, Any]
    user_message: dict[str, Any]
    reply: dict[str, Any]
    reply_pk: int
    session_pk: int
    user_pk: int
    session_row: Row[Any] | None = None


def start_turn(
    conn: Connection,
    *,
    user_pk: int,
    session_id: str,
    user_msg: NewMessage,
    reply_id: str,
    choose_model: Callable[[str | None], str],
    owner: str,
    lease_ttl_s: float,
    session_fields: dict[str, Any] | None,
) -> Turn:
    """Store the user message and an empty ``streaming`` reply in one transaction.

    The user message is committed before the model is called (G2). A replay of the same turn
    returns the stored pair and starts nothing (G1). A different send while a reply streams is
    refused before anything is stored (G4): checked here under the session lock, and enforced by
    the partial unique index ``uq_messages_one_streaming`` whatever path writes.
    ``choose_model`` gets the session's model and names the one to use (or raises).
    """
    try:
        session = live_session(conn, user_pk, session_id, for_update=True)
    except NotFound:
        if session_fields is None:
            raise
        # ``session`` creates the chat when it is absent; it never edits an existing one.
        create_session_once(conn, user_pk=user_pk, session_id=session_id, fields=session_fields)
        session = live_session(conn, user_pk, session_id, for_update=True)

    existing_reply = find_message(conn, user_pk, reply_id)
    if existing_reply is not None:
        return _replay(conn, session, user_msg, existing_reply)
    model = choose_model(session.model)
    _refuse_if_generating(conn, session)

    # The user message at next_seq (or, for a regeneration, the stored one), the reply after
    # it, then one update of the session for both: fewer round trips before the first token.
    parent_id = resolve_parent(conn, session, user_msg)
    user_row = insert_once(conn, session, user_msg, parent_id=parent_id)
    if user_row is None:
        user_public = replay_or_conflict(conn, session, user_msg)
        if user_public is None:
            raise IdempotencyConflict(f"message {user_msg.id} was stored with other content")
        used = 0
    else:
        user_public, used = message_public(user_row, session.id), 1
    now = utcnow()
    reply = NewMessage(
        id=reply_id,
        role="assistant",
        content="",
        fingerprint=request_hash({"reply_to": user_msg.id}),
        parent_id=user_msg.id,
        parent_given=True,
        model=model,
        status="streaming",
        extra={"lease_owner": owner, "lease_expires_at": now + timedelta(seconds=lease_ttl_s)},
    )
    row = insert_once(conn, session, reply, parent_id=user_msg.id, seq=session.last_seq + used + 1)
    if row is None:
        raise IdempotencyConflict(f"message {reply_id} exists in another session")
    changes: dict[str, Any] = {
        "last_seq": S.c.last_seq + used + 1,
        "active_leaf_id": reply_id,
        "updated_at": now,
    }
    if not session.title:
        changes["title"] = title_from(user_public["content"])
    session = (
        conn.execute(update(S).where(S.c.pk == session.pk).values(changes).returning(S))
    ).one()
    return Turn(
        created=True,
        session=session_public(session),
        user_message=user_public,
        reply=message_public(row, session.id),
        reply_pk=row.pk,
        session_pk=session.pk,
        user_pk=user_pk,
        session_row=session,
    )


def _replay(conn: Connection, session: Row[Any], user_msg: NewMessage, reply: Row[Any]) -> Turn:
    user = replay_or_conflict(conn, session, user_msg)
    if user is None or reply.parent_id != user_msg.id or reply.session_pk != session.pk:
        raise IdempotencyConflict(f"reply {reply.id} belongs to another turn")
    return Turn(
        created=False,
        session=session_public(session),
        user_message=user,
        reply=message_public(reply, session.id),
        reply_pk=reply.pk,
        session_pk=session.pk,
        user_pk=session.user_pk,
    )


def _refuse_if_generating(conn: Connection, session: Row[Any]) -> None:
    running = (
        conn.execute(
            select(M.c.pk, M.c.id, M.c.lease_expires_at).where(
                M.c.session_pk == session.pk, M.c.status == "streaming"
            )
        )
    ).first()
    if running is None:
        return
    expires = running.lease_expires_at
    if expires is not None and expires > utcnow():
        raise GenerationInProgress(
            f"reply {running.id} is still being generated", reply_id=running.id
        )
    # Its owner died: interrupt it now rather than make the user wait for the reaper.
    conn.execute(
        update(M)
        .where(M.c.pk == running.pk, M.c.status == "streaming")
        .values(status="interrupted", lease_owner=None, updated_at=utcnow())
    )


def title_from(content: Any, limit: int = 60) -> str:
    """A first title from the first message, at once; the model may improve it later."""
    text = (
        content
        if isinstance(content, str)
        else " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    )
    text = " ".join(text.split())
    if not text:
        return "Image"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass
class Checkpoint:
    reply_pk: int
    content: str


def checkpoint_many(
    conn: Connection, owner: str, checkpoints: list[Checkpoint], lease_until: datetime
) -> set[int]:
    """One statement for every live reply of this process: write text, renew the lease.
    Returns the replies that are no longer this process's to write (cancelled elsewhere,
    deleted with their session, or reaped)."""
    if not checkpoints:
        return set()
    now = utcnow()
    stmt = (
        update(M)
        .where(M.c.pk == bindparam("b_pk"), M.c.status == "streaming", M.c.lease_owner == owner)
        .values(content=bindparam("b_content"), lease_expires_at=lease_until, updated_at=now)
    )
    params = [{"b_pk": c.reply_pk, "b_content": c.content} for c in checkpoints]
    conn.execute(stmt, params)
    return not_owned(conn, owner, [c.reply_pk for c in checkpoints])


def not_owned(conn: Connection, owner: str, reply_pks: list[int]) -> set[int]:
    """The replies among ``reply_pks`` that ``owner`` may no longer write: cancelled elsewhere,
    deleted with their session, or reaped."""
    still = conn.scalars(
        select(M.c.pk).where(
            M.c.pk.in_(reply_pks), M.c.status == "streaming", M.c.lease_owner == owner
        )
    )
    return set(reply_pks) - set(still)


def finish_reply(
    conn: Connection,
    *,
    reply_pk: int,
    owner: str,
    content: str,
    status: str,
    error: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> Row[Any] | None:
    """Write a reply's final state, once. A reply cancelled by another process is still ours
    to complete with the text we have; one reaped or deleted is not. Returns the row or None."""
    stmt = (
        update(M)
        .where(
            M.c.pk == reply_pk,
            M.c.lease_owner == owner,
            M.c.status.in_(("streaming", "cancelled")),
        )
        .values(
            content=content,
            status=status,
            error=error,
            usage=usage,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=utcnow(),
        )
        .returning(M)
    )
    row: Row[Any] | None = conn.execute(stmt).first()
    return row


def cancel_reply(conn: Connection, *, user_pk: int, session_id: str, reply_id: str) -> Row[Any]:
    """Mark a streaming reply cancelled; its owner stops and writes its last text (G5)."""
    session = live_session(conn, user_pk, session_id)
    row = find_message(conn, user_pk, reply_id)
    if row is None or row.session_pk != session.pk:
        raise NotFound(f"no message {reply_id} in this session")
    if row.status == "streaming":
        conn.execute(
            update(M)
            .where(M.c.pk == row.pk, M.c.status == "streaming")
            .values(status="cancelled", updated_at=utcnow())
        )
        row = find_message(conn, user_pk, reply_id)
        assert row is not None
    return row


def in_flight(row: Row[Any]) -> bool:
    """Whether a reply's final text may still change: it streams, or it was cancelled by
    another process and its owner (still holding the lease) has yet to write its last text."""
    if row.status == "streaming":
        return True
    expires = row.lease_expires_at
    return bool(
        row.status == "cancelled" and row.lease_owner and expires is not None and expires > utcnow()
    )


def reply_state(conn: Connection, reply_pk: int) -> Row[Any] | None:
    return (conn.execute(select(M).where(M.c.pk == reply_pk))).first()


def reap_expired(conn: Connection) -> int:
    """Replies whose owner's lease ran out become ``interrupted`` with their last checkpoint."""
    result = conn.execute(
        update(M)
        .where(M.c.status == "streaming", M.c.lease_expires_at < utcnow())
        .values(status="interrupted", lease_owner=None, updated_at=utcnow())
    )
    return int(result.rowcount)
