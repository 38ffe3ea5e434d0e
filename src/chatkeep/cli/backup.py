"""``chatkeep backup PATH`` and ``chatkeep restore PATH`` (SPEC 6.2).

SQLite: the backup is SQLite's online backup API, copying every page in one step inside one
read transaction, so the copy is the database as of one commit even while the server keeps
writing (WAL readers never block writers). It is written next to PATH, checked with
``PRAGMA integrity_check`` and renamed into place: a backup that exists is whole.
Images are rows of the database, so the one file is everything.

PostgreSQL: ``pg_dump --format=custom`` (one consistent snapshot too) and ``pg_restore`` into an
empty database; docs/operations.md shows the same commands for doing it by hand.

``restore`` refuses a target that already holds a database: it never merges or overwrites.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from chatkeep.cli._common import err, run_with_db
from chatkeep.settings import Settings

_SQLITE_MAGIC = b"SQLite format 3\x00"
_PGDUMP_MAGIC = b"PGDMP"

Force = Annotated[bool, typer.Option("--force", help="Replace an existing backup file.")]


def backup(path: Path, force: Force = False) -> None:
    """Write a consistent copy of the store to PATH, while the server keeps serving."""
    settings = Settings()
    if path.exists() and not force:
        _fail(f"{path} exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        if settings.is_sqlite:
            counts = _sqlite_backup(_sqlite_file(settings), partial)
        else:
            counts = {}
            _pg_tool("pg_dump", "--format=custom", f"--file={partial}", _libpq_url(settings))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    summary = ", ".join(f"{n} {table}" for table, n in counts.items())
    err.print(f"backup written to [bold]{path}[/bold]" + (f" ({summary})" if summary else ""))


def restore(path: Path) -> None:
    """Put a backup back, into an empty data directory (SQLite) or an empty database."""
    if not path.is_file():
        _fail(f"no backup file {path}")
    with open(path, "rb") as file:
        magic = file.read(16)
    settings = Settings()
    if settings.is_sqlite:
        if not magic.startswith(_SQLITE_MAGIC):
            _fail(f"{path} is not a SQLite backup (a PostgreSQL dump goes into PostgreSQL)")
        target = _sqlite_file(settings)
        if target.exists() and target.stat().st_size > 0:
            _fail(f"{target} already exists; restore into an empty data directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            counts = _sqlite_backup(path, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    else:
        if not magic.startswith(_PGDUMP_MAGIC):
            _fail(f"{path} is not a pg_dump custom-format file")
        if asyncio.run(_has_tables(settings.resolved_database_url)):
            _fail("the target database is not empty; restore into an empty database")
        url = _libpq_url(settings)
        _pg_tool(
            "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "-d", url, str(path)
        )
        counts = {}

    async def noop(_db: Any) -> None:
        return None

    run_with_db(noop)  # brings an older backup's schema up to this version's
    summary = ", ".join(f"{n} {table}" for table, n in counts.items())
    err.print("restored" + (f" {summary}" if summary else "") + f" from [bold]{path}[/bold]")


def _sqlite_file(settings: Settings) -> Path:
    database = make_url(settings.resolved_database_url).database
    if not database:
        _fail("the SQLite URL names no file")
    return Path(str(database))


def _sqlite_backup(source: Path, target: Path) -> dict[str, int]:
    """Copy ``source`` to ``target`` with the online backup API, check the copy, count rows."""
    if not source.is_file():
        _fail(f"no database at {source}")
    target.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=60)
    dst = sqlite3.connect(target)
    try:
        src.execute("PRAGMA busy_timeout=60000")
        src.backup(dst)  # pages=-1: all of it in one step, as of one snapshot
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        (verdict,) = dst.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            _fail(f"the copy failed its integrity check: {verdict}")
        tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            name: dst.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            for name in ("users", "sessions", "messages", "blobs")
            if name in tables
        }
    finally:
        dst.close()
        src.close()


def _libpq_url(settings: Settings) -> str:
    """The SQLAlchemy URL as libpq reads it (no ``+asyncpg`` driver suffix)."""
    url = make_url(settings.resolved_database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _pg_tool(name: str, *args: str) -> None:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        _fail(f"{name} is not installed (it comes with the PostgreSQL client tools)")
    result = subprocess.run([str(found), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _fail(f"{name} failed: {result.stderr.strip()[-2000:]}")


async def _has_tables(url: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
        return bool(names)
    finally:
        await engine.dispose()


def _fail(message: str) -> Any:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)
