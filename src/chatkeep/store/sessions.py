"""Sessions (chats): create once, list by keyset, patch, and tombstone."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from chatkeep.problems import Gone, IdempotencyConflict, Invalid, InvalidParent, NotFound
from chatkeep.store import search
from chatkeep.store.hashing import request_hash
from chatkeep.store.tables import ChatSession, Message, table, utcnow

S = table(ChatSession)
M = table(Message)


def session_public(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "title": row.title,
        "model": row.model,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "pinned": row.pinned,
        "archived": row.archived,
        "active_leaf_id": row.active_leaf_id,
        "last_seq": row.last_seq,
    }


def create_session_once(
    conn: Connection, *, user_pk: int, session_id: str, fields: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Create the session if absent; else return it. ``(public, created)``.

    ``INSERT … ON CONFLICT DO NOTHING``, then read the winner in a second statement: on
    PostgreSQL a racing insert of the same id waits for the first transaction and then inserts
    nothing, and only a new statement's snapshot can see the winner (SPEC 9, G1).
    """
    # Defaults spelled out or left out are the same request.
    canonical = {
        "title": fields.get("title") or "",
        "model": fields.get("model"),
        "pinned": bool(fields.get("pinned", False)),
        "archived": bool(fields.get("archived", False)),
    }
    given = fields.get("created_at")
    # A client-given time (an import) is in the fingerprint only when given, so replays of
    # requests without it keep theirs (G1). updated_at starts there too: the imported messages
    # then move it on to the last one's time (``advance_session``), not to now.
    fingerprint = request_hash(
        canonical if given is None else {**canonical, "created_at": given.isoformat()}
    )
    now = utcnow() if given is None else given
    values = {
        "user_pk": user_pk,
        "id": session_id,
        **canonical,
        "request_hash": fingerprint,
        "created_at": now,
        "updated_at": now,
        "last_seq": 0,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(S)
        .values(values)
        .on_conflict_do_nothing(index_elements=["user_pk", "id"])
        .returning(S)
    )
    row = conn.execute(stmt).first()
    if row is not None:
        return session_public(row), True
    existing = _get_row(conn, user_pk, session_id)
    assert existing is not None, "a conflicting row must exist"
    if existing.deleted_at is not None:
        raise Gone()  # a late retry cannot bring a deleted chat back (G5)
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(f"session {session_id} was created with other fields")
    return session_public(existing), False


# Built once: building a statement costs more than running it through the cache (issue 6).
_BY_ID = select(S).where(S.c.user_pk == bindparam("user_pk"), S.c.id == bindparam("session_id"))
_BY_ID_FOR_UPDATE = _BY_ID.with_for_update()


def _get_row(
    conn: Connection, user_pk: int, session_id: str, *, for_update: bool = False
) -> Row[Any] | None:
    stmt = _BY_ID_FOR_UPDATE if for_update and conn.dialect.name == "postgresql" else _BY_ID
    return conn.execute(stmt, {"user_pk": user_pk, "session_id": session_id}).first()


def live_session(
    conn: Connection, user_pk: int, session_id: str, *, for_update: bool = False
) -> Row[Any]:
    """The user's session, or 404 (absent or another user's, G7) or 410 (deleted, G5).

    ``for_update`` locks the row on PostgreSQL: every append to a session holds this lock, which
    is what makes ``seq`` contiguous (SQLite's BEGIN IMMEDIATE already serializes writers).
    """
    row = _get_row(conn, user_pk, session_id, for_update=for_update)
    if row is None:
        raise NotFound(f"no session {session_id}")
    if row.deleted_at is not None:
        raise Gone()
    return row


def _encode_cursor(updated_at: datetime, pk: int) -> str:
    raw = json.dumps([updated_at.isoformat(), pk]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, pk = json.loads(base64.urlsafe_b64decode(padded))
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or not 0 <= int(pk) < 2**63:
            raise ValueError("out of range")
        return when.astimezone(UTC), int(pk)
    except (ValueError, TypeError, OverflowError) as exc:
        raise Invalid("cursor is not one this server gave out", field="cursor") from exc


def list_sessions(
    conn: Connection,
    *,
    user_pk: int,
    limit: int,
    cursor: str | None = None,
    q: str | None = None,
    archived: bool = False,
    pinned: bool | None = None,
) -> dict[str, Any]:
    """Newest first by ``updated_at``; a keyset cursor, so page 100 costs what page 1 does."""
    stmt = select(S).where(
        S.c.user_pk == user_pk, S.c.archived == archived, S.c.deleted_at.is_(None)
    )
    if pinned is not None:
        stmt = stmt.where(S.c.pinned == pinned)
    if q:
        # Case-insensitive beyond ASCII: an ICU collation on PostgreSQL (a C-locale database
        # folds only A-Z), and Python's str.lower as SQLite's lower() (see engine.py).
        title = S.c.title.collate("und-x-icu") if conn.dialect.name == "postgresql" else S.c.title
        in_title = func.lower(title).contains(q.lower(), autoescape=True)
        # Titles by substring (as typed so far), titles and message text by word (issue 10).
        by_word = search.sessions_matching(conn.dialect.name, user_pk, q)
        stmt = stmt.where(in_title if by_word is None else or_(in_title, S.c.pk.in_(by_word)))
    if cursor:
        after_stamp, after_pk = _decode_cursor(cursor)
        # The leading ``<=`` bounds the index range scan; the OR alone would be a filter.
        stmt = stmt.where(
            S.c.updated_at <= after_stamp,
            or_(S.c.updated_at < after_stamp, S.c.pk < after_pk),
        )
    stmt = stmt.order_by(S.c.updated_at.desc(), S.c.pk.desc()).limit(limit + 1)
    rows = conn.execute(stmt).all()
    page, more = rows[:limit], len(rows) > limit
    next_cursor = _encode_cursor(page[-1].updated_at, page[-1].pk) if more else None
    return {"sessions": [session_public(r) for r in page], "next_cursor": next_cursor}


def patch_session(
    conn: Connection, *, user_pk: int, session_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    row = live_session(conn, user_pk, session_id, for_update=True)
    leaf = changes.get("active_leaf_id")
    if "active_leaf_id" in changes and leaf is not None:
        found = conn.scalar(
            select(M.c.pk).where(M.c.user_pk == user_pk, M.c.id == leaf, M.c.session_pk == row.pk)
        )
        if found is None:
            raise InvalidParent(f"{leaf} is not a message of this session", field="active_leaf_id")
    if changes:
        conn.execute(update(S).where(S.c.pk == row.pk).values(**changes))
    return session_public(live_session(conn, user_pk, session_id))


def tombstone(conn: Connection, *, user_pk: int, session_id: str) -> int | None:
    """Delete a session's messages and keep a tombstone (G5). Returns its pk, or None if it was
    already deleted; 404 if it never existed for this user."""
    row = _get_row(conn, user_pk, session_id, for_update=True)
    if row is None:
        raise NotFound(f"no session {session_id}")
    if row.deleted_at is not None:
        return None
    conn.execute(delete(M).where(M.c.session_pk == row.pk))
    conn.execute(
        update(S)
        .where(S.c.pk == row.pk)
        .values(deleted_at=utcnow(), title="", model=None, active_leaf_id=None)
    )
    return int(row.pk)
