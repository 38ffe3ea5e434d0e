"""Alembic migrations, applied on start-up and by ``chatkeep db upgrade``.

Several server processes may start at once: the upgrade runs inside one write transaction that
holds SQLite's write lock (BEGIN IMMEDIATE) or a PostgreSQL advisory lock, so exactly one of them
migrates and the others find the schema already current.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from chatkeep.store.engine import Database

_MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_LOCK_KEY = 0x636B_6D67  # "ckmg"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    await db.write(_upgrade, revision)


def _upgrade(conn: Connection, revision: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_KEY})")
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


async def current_revision(db: Database) -> str | None:
    return await db.read(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
