"""Limit state in the database, shared by every process and replica (G8).

A rate is counted in fixed windows: one upsert per hit (``INSERT … ON CONFLICT DO UPDATE …
RETURNING``, the same statement on SQLite and PostgreSQL) returns the window's count so far.
A window allows up to ``limit`` hits; across a window's edge a client may get up to twice that
in a short burst, which a guard against runaway clients accepts. Concurrent generations are not
counted here at all: they are the user's ``streaming`` replies with a live lease, counted in
the transaction that would start another (``refuse_too_many_generations``).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from chatkeep.problems import RateLimited
from chatkeep.store.tables import Message, RateLimit, table, utcnow

R = table(RateLimit)
M = table(Message)
_GENERATIONS_LOCK = 0x636B_676E  # "ckgn": advisory lock class for one user's generations


def hit(conn: Connection, key: str, *, limit: int, window_s: int, now: float) -> int | None:
    """Count one hit on ``key``; the seconds to wait when it is over the limit, else None."""
    window = int(now // window_s) * window_s
    insert: Any = postgresql.insert(R) if conn.dialect.name == "postgresql" else sqlite.insert(R)
    stmt = (
        insert.values(key=key, window_start=window, hits=1)
        .on_conflict_do_update(
            index_elements=[R.c.key, R.c.window_start], set_={"hits": R.c.hits + 1}
        )
        .returning(R.c.hits)
    )
    hits = int(conn.scalar(stmt) or 0)
    if hits == 1:  # the key's first hit in this window: forget its older windows
        conn.execute(delete(R).where(R.c.key == key, R.c.window_start < window))
    if hits > limit:
        return max(1, math.ceil(window + window_s - now))
    return None


def count(conn: Connection, key: str, *, window_s: int, now: float) -> tuple[int, int]:
    """Hits on ``key`` in the current window, and the seconds until it ends."""
    window = int(now // window_s) * window_s
    stmt = select(R.c.hits).where(R.c.key == key, R.c.window_start == window)
    return int(conn.scalar(stmt) or 0), max(1, math.ceil(window + window_s - now))


def refuse_too_many_generations(conn: Connection, user_pk: int, limit: int) -> None:
    """Raise 429 when ``user_pk`` already has ``limit`` replies being generated. Called in the
    transaction that inserts the next one: SQLite has one writer at a time, and on PostgreSQL a
    per-user advisory lock makes concurrent starts take turns, so the count is exact."""
    if limit <= 0:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(func.pg_advisory_xact_lock(_GENERATIONS_LOCK, zlib.crc32(b"%d" % user_pk) >> 1))
        )
    running = conn.scalar(
        select(func.count())
        .select_from(M)
        .where(M.c.user_pk == user_pk, M.c.status == "streaming", M.c.lease_expires_at > utcnow())
    )
    if int(running or 0) >= limit:
        raise RateLimited(
            retry_after=2,
            detail=f"at most {limit} replies may be generated at once; wait for one to finish",
        )
