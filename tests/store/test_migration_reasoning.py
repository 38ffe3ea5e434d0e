"""Migration 0004 (issue 8: a reply's reasoning) upgrades a database that already holds chats,
on both databases: every row keeps what it had and simply has no reasoning."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from chatkeep.store import migrate
from chatkeep.store.engine import Database
from chatkeep.store.tables import ChatSession, Message, User, table, utcnow

U, S, M = table(User), table(ChatSession), table(Message)


def _fill(conn: Connection) -> None:
    # Only columns that exist at 0001 are named (none of them has a default that is not).
    now = utcnow()
    user_pk = conn.execute(
        insert(U).values(name="old", is_admin=False, created_at=now).returning(U.c.pk)
    ).scalar_one()
    session_pk = conn.execute(
        insert(S)
        .values(
            user_pk=user_pk,
            id="s-1",
            title="Old chat",
            created_at=now,
            updated_at=now,
            pinned=False,
            archived=False,
            last_seq=1,
            request_hash="h",
        )
        .returning(S.c.pk)
    ).scalar_one()
    conn.execute(
        insert(M).values(
            session_pk=session_pk,
            user_pk=user_pk,
            id="m-1",
            seq=1,
            role="assistant",
            content="kept text",
            status="complete",
            request_hash="h",
            created_at=now,
            updated_at=now,
        )
    )


async def test_0004_upgrades_a_database_with_rows(db_url: str) -> None:
    db = Database(db_url)
    try:
        await migrate.upgrade(db, "0001")
        await db.write(_fill)
        await migrate.upgrade(db)
        row = await db.read(
            lambda c: c.execute(
                select(M.c.content, M.c.reasoning, M.c.reasoning_ms).where(M.c.id == "m-1")
            ).one()
        )
    finally:
        await db.dispose()
    assert tuple(row) == ("kept text", None, None)
