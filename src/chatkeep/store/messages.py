"""Messages: append exactly once with a contiguous ``seq``, read the active path, sync by seq.

``insert_once`` and ``next_seq`` are the two mechanisms behind G1 and "no gaps": the session row
is locked for the whole append (PostgreSQL ``FOR UPDATE``; SQLite ``BEGIN IMMEDIATE``), the new
row takes ``last_seq + 1``, and the insert skips a row whose id already exists so the caller can
answer with the stored one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Row, Select, and_, bindparam, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from chatkeep.problems import BatchFailed, IdempotencyConflict, InvalidParent, Problem
from chatkeep.store.sessions import live_session
from chatkeep.store.tables import ChatSession, Message, table, utcnow

S = table(ChatSession)
M = table(Message)
ROLES = ("system", "user", "assistant")
STATUSES = ("complete", "streaming", "error", "cancelled", "interrupted")


@dataclass
class NewMessage:
    id: str
    role: str
    content: Any
    fingerprint: str
    parent_id: str | None = None
    # False: the client did not say, so the message continues the active path.
    parent_given: bool = False
    model: str | None = None
    status: str = "complete"
    error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def message_public(row: Row[Any], session_id: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "session_id": session_id,
        "seq": row.seq,
        "parent_id": row.parent_id,
        "role": row.role,
        "content": row.content,
        "model": row.model,
        "status": row.status,
        "error": row.error,
        "usage": row.usage,
        "reasoning": row.reasoning,
        "reasoning_ms": row.reasoning_ms,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


# Built once: building a statement costs more than running it through the cache (issue 6).
_FIND = select(M).where(M.c.user_pk == bindparam("user_pk"), M.c.id == bindparam("message_id"))
_INSERT = {
    name: dialect.insert(M).on_conflict_do_nothing(index_elements=["user_pk", "id"]).returning(M)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_ADVANCE = (
    update(S)
    .where(S.c.pk == bindparam("b_pk"))
    .values(
        last_seq=S.c.last_seq + 1,
        active_leaf_id=bindparam("b_leaf"),
        updated_at=bindparam("b_now"),
    )
    .returning(S)
)


_PUBLIC = (
    "id", "seq", "parent_id", "role", "content", "model", "status", "error", "usage",
    "reasoning", "reasoning_ms", "created_at", "updated_at",
)  # fmt: skip


def messages_public(rows: Sequence[Row[Any]], session_id: str) -> list[dict[str, Any]]:
    """``message_public`` for many rows at once, by position: attribute access on a Row costs
    more than building the dict (issue 6: a 1,000-message chat)."""
    if not rows:
        return []
    keys = list(rows[0]._fields)
    get = itemgetter(*(keys.index(name) for name in _PUBLIC))
    out = []
    for row in rows:
        (i, seq, parent, role, content, model, status, error, usage, reasoning, reasoning_ms,
         created, updated) = get(row)  # fmt: skip
        out.append(
            {
                "id": i,
                "session_id": session_id,
                "seq": seq,
                "parent_id": parent,
                "role": role,
                "content": content,
                "model": model,
                "status": status,
                "error": error,
                "usage": usage,
                "reasoning": reasoning,
                "reasoning_ms": reasoning_ms,
                "created_at": created,
                "updated_at": updated,
            }
        )
    return out


def find_message(conn: Connection, user_pk: int, message_id: str) -> Row[Any] | None:
    return conn.execute(_FIND, {"user_pk": user_pk, "message_id": message_id}).first()


def replay_or_conflict(
    conn: Connection, session: Row[Any], msg: NewMessage
) -> dict[str, Any] | None:
    """The stored message if ``msg.id`` was used before with the same payload; 409 if with
    another payload or in another session; None if the id is new."""
    existing = find_message(conn, session.user_pk, msg.id)
    if existing is None:
        return None
    if existing.session_pk != session.pk or existing.request_hash != msg.fingerprint:
        raise IdempotencyConflict(f"message {msg.id} was stored with other content")
    return message_public(existing, session.id)


def insert_once(
    conn: Connection,
    session: Row[Any],
    msg: NewMessage,
    *,
    parent_id: str | None,
    seq: int | None = None,
) -> Row[Any] | None:
    """Insert the message at ``next_seq``; None if its id was taken meanwhile. The session row
    must be locked by the caller, which also moves ``last_seq`` on (``advance_session``)."""
    now = utcnow()
    values = {
        "session_pk": session.pk,
        "user_pk": session.user_pk,
        "id": msg.id,
        "seq": seq if seq is not None else next_seq(session),
        "parent_id": parent_id,
        "role": msg.role,
        "content": msg.content,
        "model": msg.model,
        "status": msg.status,
        "error": msg.error,
        "usage": msg.usage,
        "request_hash": msg.fingerprint,
        "created_at": now,
        "updated_at": now,
        **msg.extra,
    }
    return conn.execute(_INSERT[conn.dialect.name], values).first()


def next_seq(session: Row[Any]) -> int:
    return int(session.last_seq) + 1


def advance_session(
    conn: Connection, session: Row[Any], leaf_id: str, created_at: datetime | None = None
) -> Row[Any]:
    """Move ``last_seq`` on and touch ``updated_at``: now, or for a message with a client-given
    (imported) time, that time if later than the session's, so an imported chat takes its
    original place in the sidebar rather than the top (SPEC 6.2)."""
    now = utcnow() if created_at is None else max(session.updated_at, created_at)
    params = {"b_pk": session.pk, "b_leaf": leaf_id, "b_now": now}
    row: Row[Any] = conn.execute(_ADVANCE, params).one()
    return row


def resolve_parent(conn: Connection, session: Row[Any], msg: NewMessage) -> str | None:
    """Without a parent_id a message continues the active path; with one it must name a
    message of this session, and if that is not the leaf it starts a branch (G3)."""
    if not msg.parent_given:
        leaf: str | None = session.active_leaf_id
        return leaf
    if msg.parent_id is None:
        return None
    found = conn.scalar(
        select(M.c.session_pk).where(M.c.user_pk == session.user_pk, M.c.id == msg.parent_id)
    )
    if found != session.pk:
        raise InvalidParent(f"{msg.parent_id} is not a message of this session", field="parent_id")
    return msg.parent_id


def append_to_locked(
    conn: Connection, session: Row[Any], msg: NewMessage
) -> tuple[dict[str, Any], bool, Row[Any]]:
    """Append to a session whose row this transaction holds locked.
    Returns ``(public message, created, session row after the append)``."""
    parent_id = resolve_parent(conn, session, msg)
    row = insert_once(conn, session, msg, parent_id=parent_id)
    if row is None:
        # The id is taken: a replay (200, the stored message) or a conflict (409).
        replay = replay_or_conflict(conn, session, msg)
        if replay is None:
            raise IdempotencyConflict(f"message {msg.id} was stored with other content")
        return replay, False, session
    session = advance_session(conn, session, msg.id, msg.extra.get("created_at"))
    return message_public(row, session.id), True, session


def append_message(
    conn: Connection, *, user_pk: int, session_id: str, msg: NewMessage
) -> tuple[dict[str, Any], bool]:
    session = live_session(conn, user_pk, session_id, for_update=True)
    public, created, _ = append_to_locked(conn, session, msg)
    return public, created


def append_batch(
    conn: Connection, *, user_pk: int, session_id: str, msgs: list[NewMessage]
) -> list[dict[str, Any]]:
    """All of the batch or none of it, in order, with a result per item (G9, TC-5.x)."""
    session = live_session(conn, user_pk, session_id, for_update=True)
    results: list[dict[str, Any]] = []
    failed = False
    for msg in msgs:
        if failed:
            results.append({"id": msg.id, "status": 424, "code": "not_attempted"})
            continue
        try:
            public, created, session = append_to_locked(conn, session, msg)
        except Problem as problem:
            failed = True
            results.append(
                {
                    "id": msg.id,
                    "status": problem.status,
                    "code": problem.code,
                    "detail": problem.detail,
                }
            )
            continue
        results.append({"id": msg.id, "status": 201 if created else 200, "message": public})
    if failed:
        # Rolled back: the items before the failing one were not stored either.
        results = [
            r if r["status"] >= 400 else {"id": r["id"], "status": 424, "code": "rolled_back"}
            for r in results
        ]
        raise BatchFailed("no message of the batch was saved", results=results)
    return results


def _path_statement() -> Select[Any]:
    """Root-ward walk from a leaf over ``parent_id``, at most ``:depth`` messages.

    Every condition of the recursive step is a join on the previous row's key columns, never a
    constant: with constants, PostgreSQL without fresh statistics scans the whole session at
    each step (seconds for long chats); with joins each step is one index lookup.
    """
    anchor = select(M, literal(0).label("depth")).where(
        M.c.user_pk == bindparam("user_pk"),
        M.c.session_pk == bindparam("session_pk"),
        M.c.id == bindparam("leaf_id"),
    )
    path = anchor.cte("path", recursive=True)
    parent = M.alias("parent")
    step = (
        select(parent, (path.c.depth + 1).label("depth"))
        .join(
            path,
            and_(
                parent.c.user_pk == path.c.user_pk,
                parent.c.session_pk == path.c.session_pk,
                parent.c.id == path.c.parent_id,
            ),
        )
        .where(path.c.depth < bindparam("depth"))
    )
    path = path.union_all(step)
    return select(path).order_by(path.c.seq)


_ACTIVE_PATH = _path_statement()


def active_path(
    conn: Connection,
    session: Row[Any],
    *,
    leaf_id: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The messages from the root to the leaf (default: the session's active leaf), in order;
    with ``limit``, only the last ``limit`` of them."""
    page, _ = path_page(conn, session, leaf_id=leaf_id, limit=limit)
    return page


def path_page(
    conn: Connection,
    session: Row[Any],
    *,
    leaf_id: str | None = None,
    limit: int | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The last ``limit`` messages of the path ending at ``leaf_id``, and whether more
    precede them (ask again with ``leaf_id`` = the first one's ``parent_id``)."""
    leaf = leaf_id or session.active_leaf_id
    if leaf is None:
        return [], False
    depth = limit if limit is not None else 2**31 - 1  # "no limit", in an int4
    params = {"user_pk": session.user_pk, "session_pk": session.pk, "leaf_id": leaf, "depth": depth}
    rows = conn.execute(_ACTIVE_PATH, params).all()
    more = limit is not None and len(rows) > limit
    if more:
        rows = rows[1:]
    return messages_public(rows, session.id), more


def messages_after(
    conn: Connection, session: Row[Any], *, after_seq: int, limit: int
) -> dict[str, Any]:
    """Every branch, in ``seq`` order, after a given seq: incremental sync for clients."""
    stmt = (
        select(M)
        .where(M.c.session_pk == session.pk, M.c.seq > after_seq)
        .order_by(M.c.seq)
        .limit(limit + 1)
    )
    rows = conn.execute(stmt).all()
    page = rows[:limit]
    return {
        "messages": messages_public(page, session.id),
        "next_after_seq": page[-1].seq if len(rows) > limit else None,
        "last_seq": session.last_seq,
    }
