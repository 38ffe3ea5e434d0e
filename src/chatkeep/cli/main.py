"""The ``chatkeep`` command."""

from __future__ import annotations

import typer

from chatkeep.cli.accounts import keys_app, users_app
from chatkeep.cli.audit import audit
from chatkeep.cli.backup import backup, restore
from chatkeep.cli.serve import db_app, serve

app = typer.Typer(
    name="chatkeep",
    help="A self-hosted chat service for language models whose history is always right.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(serve)
app.command()(audit)
app.command()(backup)
app.command()(restore)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
