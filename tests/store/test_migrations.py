"""Migrations are the schema: upgrading an empty database gives exactly the tables, columns and
indexes the code declares, on both databases, and running them again (or twice at once, as
several server processes starting together do) changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from chatkeep.store import migrate
from chatkeep.store.engine import Database
from chatkeep.store.search import is_search_object
from chatkeep.store.tables import Base


def _drift(conn: Connection) -> list[Any]:
    # Migration 0003's search indexes are SQL of their own (FTS5, tsvector), not declared tables.
    opts = {"compare_type": True, "include_name": lambda name, *_: not is_search_object(name)}
    context = MigrationContext.configure(conn, opts=opts)
    return list(compare_metadata(context, Base.metadata))


async def test_upgrading_an_empty_database_builds_the_declared_schema(db_url: str) -> None:
    db = Database(db_url)
    try:
        await asyncio.gather(migrate.upgrade(db), migrate.upgrade(db))
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
        drift = await db.read(_drift)
    finally:
        await db.dispose()
    assert drift == [], drift
