"""``chatkeep serve`` and ``chatkeep db upgrade``."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from chatkeep.cli._common import run_with_db
from chatkeep.settings import Settings
from chatkeep.store import migrate, users
from chatkeep.store.engine import Database

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)


@db_app.command("upgrade")
def upgrade() -> None:
    """Apply the schema migrations (the server also does this when it starts)."""

    async def work(db: Database) -> str | None:
        return await migrate.current_revision(db)

    revision = run_with_db(work)
    err.print(f"database at revision {revision}")


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Server processes.")] = None,
) -> None:
    """Run the chatkeep server."""
    # Worker processes build their own Settings from the environment, so options go there.
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"CHATKEEP_{name}"] = str(value)
    settings = Settings()

    async def prepare(db: Database) -> int:
        return await db.read(users.count_users)

    count = run_with_db(prepare)  # migrate once here, before any worker starts
    if settings.workers > 1 and not settings.prometheus_multiproc_dir:
        # prometheus_client reads this in each worker to merge their metrics.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chatkeep-metrics-")
    os.environ["CHATKEEP_MIGRATE_ON_START"] = "false"
    url = f"http://{settings.host}:{settings.port}"
    database = (
        "SQLite at " + str(settings.data_dir / "chatkeep.db")
        if not settings.database_url
        else settings.resolved_database_url.split("@")[-1]
    )
    err.print(f"chatkeep is running at [bold]{url}[/bold]  (database: {database})")
    if count == 0:
        err.print(
            f"First run: open {url} to create the admin account, or run: chatkeep users add NAME"
        )
    uvicorn.run(
        "chatkeep.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
