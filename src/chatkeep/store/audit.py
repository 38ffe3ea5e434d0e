"""``chatkeep audit``: the source report's "Monitoring" checks, plus integrity checks, on the
live database (G10). Each check is one query that returns the offending rows; any row is a
finding. The guarantees should make every check come back empty."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Text,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
)

from chatkeep.store.tables import ChatSession, Message, User, table, utcnow

S = table(ChatSession)
M = table(Message)
U = table(User)


@dataclass
class Finding:
    check: str
    description: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def _seconds_apart(dialect: str, a: Any, b: Any) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return func.abs(func.julianday(a) - func.julianday(b)) * 86400.0
    return func.abs(func.extract("epoch", a - b))


def duplicate_messages(dialect: str) -> Select[Any]:
    """Source report, metric 1: the same content twice in a session within one second.
    Narrowed to the same role and parent: a message sent twice at the same point of the chat."""
    m1, m2 = M.alias("m1"), M.alias("m2")
    return (
        select(S.c.id.label("session_id"), m1.c.id.label("first"), m2.c.id.label("second"))
        .join(m1, m1.c.session_pk == S.c.pk)
        .join(
            m2,
            and_(
                m2.c.session_pk == m1.c.session_pk,
                m2.c.pk > m1.c.pk,
                m2.c.role == m1.c.role,
                func.coalesce(m2.c.parent_id, "") == func.coalesce(m1.c.parent_id, ""),
                cast(m2.c.content, Text) == cast(m1.c.content, Text),
            ),
        )
        .where(_seconds_apart(dialect, m1.c.created_at, m2.c.created_at) < 1)
    )


def session_spikes(dialect: str) -> Select[Any]:
    """Source report, metric 2: more than 2 sessions created within 5 seconds by one user."""
    s1, s2 = S.alias("s1"), S.alias("s2")
    window = (
        select(s1.c.user_pk, s1.c.id, func.count().label("created_within_5s"))
        .join(
            s2,
            and_(
                s2.c.user_pk == s1.c.user_pk,
                s2.c.created_at >= s1.c.created_at,
                _seconds_apart(dialect, s2.c.created_at, s1.c.created_at) < 5,
            ),
        )
        .group_by(s1.c.user_pk, s1.c.id)
        .having(func.count() > 2)
        .subquery()
    )
    return select(
        U.c.name.label("user"), window.c.id.label("first_session"), window.c.created_within_5s
    ).join(U, U.c.pk == window.c.user_pk)


def seq_gaps(_dialect: str) -> Select[Any]:
    """Messages go only with their session, so a session's seqs must be exactly 1..last_seq."""
    counts = (
        select(
            M.c.session_pk,
            func.count().label("n"),
            func.min(M.c.seq).label("lo"),
            func.max(M.c.seq).label("hi"),
        )
        .group_by(M.c.session_pk)
        .subquery()
    )
    n = func.coalesce(counts.c.n, 0)
    return (
        select(S.c.id.label("session_id"), S.c.last_seq, n.label("messages"))
        .outerjoin(counts, counts.c.session_pk == S.c.pk)
        .where(S.c.deleted_at.is_(None))
        .where(
            or_(
                n != S.c.last_seq,
                and_(n > 0, or_(counts.c.lo != 1, counts.c.hi != S.c.last_seq)),
            )
        )
    )


def orphans(_dialect: str) -> Select[Any]:
    """Messages of a deleted session, or of a session owned by another user."""
    return (
        select(M.c.id.label("message_id"), S.c.id.label("session_id"))
        .join(S, S.c.pk == M.c.session_pk)
        .where(or_(S.c.deleted_at.is_not(None), S.c.user_pk != M.c.user_pk))
    )


def broken_parents(_dialect: str) -> Select[Any]:
    """A parent must be an earlier message of the same session (so the tree has no cycles)."""
    parent = M.alias("parent")
    return (
        select(M.c.id.label("message_id"), M.c.parent_id, literal("missing or later").label("why"))
        .outerjoin(
            parent,
            and_(
                parent.c.user_pk == M.c.user_pk,
                parent.c.id == M.c.parent_id,
                parent.c.session_pk == M.c.session_pk,
                parent.c.seq < M.c.seq,
            ),
        )
        .where(M.c.parent_id.is_not(None), parent.c.pk.is_(None))
    )


def broken_leaves(_dialect: str) -> Select[Any]:
    """A session's active leaf must be one of its own messages."""
    leaf = M.alias("leaf")
    return (
        select(S.c.id.label("session_id"), S.c.active_leaf_id)
        .outerjoin(
            leaf,
            and_(
                leaf.c.user_pk == S.c.user_pk,
                leaf.c.id == S.c.active_leaf_id,
                leaf.c.session_pk == S.c.pk,
            ),
        )
        .where(S.c.active_leaf_id.is_not(None), leaf.c.pk.is_(None))
    )


def stale_generations(_dialect: str) -> Select[Any]:
    """A reply still 'streaming' although no live process holds its lease (G2)."""
    grace = utcnow() - timedelta(minutes=1)
    return select(M.c.id.label("message_id"), M.c.lease_owner, M.c.lease_expires_at).where(
        M.c.status == "streaming",
        or_(M.c.lease_expires_at.is_(None), M.c.lease_expires_at < grace),
    )


CHECKS: dict[str, tuple[str, Callable[[str], Select[Any]]]] = {
    "duplicate_messages": ("same content twice in a session within 1 s", duplicate_messages),
    "session_spikes": ("more than 2 sessions created within 5 s by one user", session_spikes),
    "seq_gaps": ("a session whose seqs are not exactly 1..last_seq", seq_gaps),
    "orphans": ("messages of a deleted or foreign session", orphans),
    "broken_parents": ("parent_id not an earlier message of the session", broken_parents),
    "broken_leaves": ("active_leaf_id not a message of the session", broken_leaves),
    "stale_generations": ("replies streaming with no live owner", stale_generations),
}


def run_audit(conn: Connection, *, limit: int = 20) -> list[Finding]:
    """Run every check; each Finding lists up to ``limit`` offending rows."""
    findings = []
    for name, (description, query) in CHECKS.items():
        stmt = query(conn.dialect.name).limit(limit)
        rows = [dict(r._mapping) for r in conn.execute(stmt).all()]
        findings.append(Finding(name, description, rows))
    return findings
