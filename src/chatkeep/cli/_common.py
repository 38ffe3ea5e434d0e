"""What the admin commands share: settings, a migrated database, and running a coroutine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from sqlalchemy import Connection

from chatkeep.problems import Problem
from chatkeep.settings import Settings
from chatkeep.store import migrate
from chatkeep.store.engine import Database

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True)


def open_database(settings: Settings) -> Database:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(
        settings.resolved_database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        retry_attempts=settings.db_retry_attempts,
    )


def run_with_db(work: Callable[[Database], Awaitable[T]], *, upgrade: bool = True) -> T:
    """Run ``work`` against the configured (and migrated) database; problems exit cleanly."""

    async def main() -> T:
        db = open_database(Settings())
        try:
            if upgrade:
                await migrate.upgrade(db)
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except Problem as problem:
        err.print(f"[red]error:[/red] {problem.detail}")
        raise typer.Exit(1) from problem


def write(work: Callable[[Connection], T]) -> T:
    """One write transaction against the configured database."""

    async def run(db: Database) -> T:
        return await db.write(work)

    return run_with_db(run)
