"""Migration 0005 (limits, disabled accounts) upgrades a database that already holds rows:
users, keys and chats written at 0001 keep working, and nobody is disabled by it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, text

from chatkeep.store import migrate, users
from chatkeep.store.engine import Database


async def test_0005_upgrades_a_database_with_rows(db_url: str) -> None:
    db = Database(db_url)
    try:
        await migrate.upgrade(db, "0001")

        def fill(conn: Connection) -> str:
            conn.execute(
                text("INSERT INTO users (name, is_admin, created_at) VALUES ('old', false, :t)"),
                {"t": datetime(2026, 1, 1, tzinfo=UTC)},
            )
            pk = conn.scalar(text("SELECT pk FROM users WHERE name = 'old'"))
            key = "ck_" + "k" * 43
            conn.execute(
                text(
                    "INSERT INTO api_keys (user_pk, name, prefix, key_hash, created_at) "
                    "VALUES (:pk, 'k', :prefix, :hash, :t)"
                ),
                {
                    "pk": pk,
                    "prefix": key[:10],
                    "hash": users.sha256_hex(key),
                    "t": datetime(2026, 1, 1, tzinfo=UTC),
                },
            )
            return key

        key = await db.write(fill)
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
        principal = await db.read(users.principal_for_api_key, key)
        assert principal is not None and principal.name == "old"
        listed = await db.read(users.list_users)
        assert listed[0]["disabled"] is False
    finally:
        await db.dispose()
