"""``chatkeep users …`` and ``chatkeep keys …``: scriptable account management."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from chatkeep.cli._common import err, run_with_db, write
from chatkeep.store import users
from chatkeep.store.engine import Database

users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys (for the SDK and scripts).", no_args_is_help=True)
out = Console()


def _read_password(confirm: bool = True) -> str:
    """From standard input when it is not a terminal (scripts); else asked twice, hidden."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return password


@users_app.command("add")
def add_user(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="Make the account an admin.")] = False,
) -> None:
    """Add an account. The first account always becomes admin."""
    password = _read_password()

    def work(conn: Any) -> dict[str, Any]:
        return users.create_user(conn, name=name, password=password, admin=admin)

    user = write(work)
    role = "admin" if user["is_admin"] else "user"
    err.print(f"added {role} [bold]{user['name']}[/bold]")


@users_app.command("list")
def list_users() -> None:
    async def work(db: Database) -> list[dict[str, Any]]:
        return await db.read(users.list_users)

    table = Table("name", "admin", "created")
    for user in run_with_db(work):
        table.add_row(user["name"], "yes" if user["is_admin"] else "", str(user["created_at"]))
    out.print(table)


@users_app.command("passwd")
def set_password(name: str) -> None:
    """Set an account's password (signs out its browsers)."""
    password = _read_password()

    def work(conn: Any) -> None:
        users.set_password(conn, name=name, password=password)

    write(work)
    err.print(f"password of [bold]{name}[/bold] changed")


@users_app.command("delete")
def delete_user(
    name: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False
) -> None:
    """Delete an account with all its chats and keys."""
    if not yes:
        typer.confirm(f"Delete {name} and all their chats?", abort=True)

    def work(conn: Any) -> None:
        users.delete_user(conn, name=name)

    write(work)
    err.print(f"deleted [bold]{name}[/bold]")


@keys_app.command("create")
def create_key(
    user: Annotated[str, typer.Argument(help="The account the key signs in as.")],
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "cli",
) -> None:
    """Create an API key. The key is printed once, alone on the last line."""

    def work(conn: Any) -> dict[str, Any]:
        return users.create_api_key(conn, user_name=user, name=name)

    key = write(work)
    err.print(f"API key [bold]{key['prefix']}…[/bold] for {user}; it is not shown again:")
    print(key["key"], flush=True)


@keys_app.command("list")
def list_keys(user: str) -> None:
    async def work(db: Database) -> list[dict[str, Any]]:
        return await db.read(users.list_api_keys, user_name=user)

    table = Table("prefix", "name", "created", "revoked")
    for key in run_with_db(work):
        table.add_row(
            key["prefix"], key["name"], str(key["created_at"]), "yes" if key["revoked"] else ""
        )
    out.print(table)


@keys_app.command("revoke")
def revoke_key(user: str, prefix: str) -> None:
    def work(conn: Any) -> int:
        return users.revoke_api_key(conn, user_name=user, prefix=prefix)

    if write(work) == 0:
        err.print(f"[red]error:[/red] {user} has no active key {prefix}")
        raise typer.Exit(1)
    err.print(f"revoked {prefix}")
