"""``chatkeep sessions list|show|export|delete`` (SPEC 6.2), over the SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from chatkeep import Client, Message, Session
from chatkeep.cli._connect import clean_errors, err, fail, open_client, resolve_session

sessions_app = typer.Typer(help="List, show, export and delete chats.", no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)


@sessions_app.command("list")
def list_sessions(
    ctx: typer.Context,
    archived: Annotated[bool, typer.Option("--archived", help="Archived chats instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Your chats, newest first."""
    client = open_client(ctx)
    with client, clean_errors(client):
        found = list(client.sessions.list(archived=archived))
    if as_json:
        for s in found:
            typer.echo(s.model_dump_json(exclude={"messages", "has_more", "status"}))
        return
    table = Table("id", "title", "model", "messages", "updated")
    for s in found:
        updated = s.updated_at.strftime("%Y-%m-%d %H:%M") if s.updated_at else ""
        table.add_row(s.id, s.title or "(untitled)", s.model or "", str(s.last_seq), updated)
    out.print(table)


def _markdown(session: Session, path: list[Message]) -> str:
    lines = [f"# {session.title or 'Untitled chat'}", ""]
    for m in path:
        who = m.role.capitalize() + (f" ({m.model})" if m.model and m.role == "assistant" else "")
        lines += [f"## {who}", "", m.text, ""]
    return "\n".join(lines)


@sessions_app.command("show")
def show(ctx: typer.Context, session: Annotated[str, typer.Argument(help="Id or prefix.")]) -> None:
    """A chat's active path, rendered."""
    client = open_client(ctx)
    with client, clean_errors(client):
        found = client.sessions.get(resolve_session(client, session))
    out.print(Markdown(_markdown(found, found.messages)))


def export_text(client: Client, session_id: str, fmt: str) -> str:
    found = client.sessions.get(session_id)
    if fmt == "markdown":
        return _markdown(found, found.messages)
    every = list(client.messages.list(session_id))  # every branch, not only the active path
    body: dict[str, Any] = {
        "session": found.model_dump(mode="json", exclude={"messages", "has_more", "status"}),
        "active_path": [m.id for m in found.messages],
        "messages": [m.model_dump(mode="json") for m in every],
    }
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


@sessions_app.command("export")
def export(
    ctx: typer.Context,
    session: Annotated[str, typer.Argument(help="Id or prefix.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or markdown.")] = "json",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write.")] = None,
) -> None:
    """A chat as JSON (every branch) or Markdown (the active path), to stdout or ``-o FILE``."""
    if fmt not in ("json", "markdown"):
        fail(f"--format must be json or markdown, not {fmt!r}")
    client = open_client(ctx)
    with client, clean_errors(client):
        text = export_text(client, resolve_session(client, session), fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    err.print(f"wrote {output}")


@sessions_app.command("delete")
def delete(
    ctx: typer.Context,
    session: Annotated[str, typer.Argument(help="Id or prefix.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a chat (a running reply is stopped; the id can never be reused)."""
    client = open_client(ctx)
    with client, clean_errors(client):
        sid = resolve_session(client, session)
        if not yes:
            title = client.sessions.get(sid).title or "(untitled)"
            if not typer.confirm(f"Delete {title!r} ({sid})?", err=True):
                raise typer.Exit(1)
        client.sessions.delete(sid)
    err.print(f"deleted {sid}")
