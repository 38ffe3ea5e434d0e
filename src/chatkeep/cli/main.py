"""The ``chatkeep`` command. Server and admin commands (serve, audit, users, keys, db) use the
store; client commands (chat, sessions, search, import) use the SDK over HTTP only, with the
server and key from the global ``--url`` / ``--api-key`` given before the command (SPEC 6.2)."""

from __future__ import annotations

from typing import Annotated

import typer

from chatkeep.cli._connect import Connection
from chatkeep.cli.accounts import keys_app, users_app
from chatkeep.cli.audit import audit
from chatkeep.cli.backup import backup, restore
from chatkeep.cli.chat import chat
from chatkeep.cli.importing import import_command
from chatkeep.cli.search import search
from chatkeep.cli.serve import db_app, serve
from chatkeep.cli.sessions import sessions_app

app = typer.Typer(
    name="chatkeep",
    help="A self-hosted chat service for language models whose history is always right.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="CHATKEEP_URL", help="Server of the client commands."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="CHATKEEP_API_KEY", help="API key (ck_…)."),
    ] = None,
) -> None:
    ctx.obj = Connection(url=url, api_key=api_key)


app.command()(serve)
app.command()(audit)
app.command()(backup)
app.command()(restore)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.command()(chat)
app.add_typer(sessions_app, name="sessions")
app.command()(search)
app.command("import")(import_command)
