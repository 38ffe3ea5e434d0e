"""``chatkeep search QUERY [--json]`` (SPEC 6.2, CONTRACTS.md): hits across your chats."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from chatkeep import SearchHit
from chatkeep.cli._connect import clean_errors, open_client

out = Console(soft_wrap=True, highlight=False)


def highlighted(hit: SearchHit) -> Text:
    """The snippet (plain text, never markup) with its matched ranges in bold."""
    text = Text(hit.snippet)
    for start, end in hit.highlights:
        text.stylize("bold yellow", start, end)
    return text


def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help='Words, "phrases", -exclusions, OR.')],
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many hits.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Search titles and messages of your chats, best match first."""
    client = open_client(ctx)
    with client, clean_errors(client):
        hits = list(client.search(query, limit=limit))
    if as_json:
        for hit in hits:
            typer.echo(hit.model_dump_json())
        return
    table = Table("chat", "role", "snippet", "session id")
    for hit in hits:
        table.add_row(
            hit.session_title or "(untitled)", hit.role or "title", highlighted(hit), hit.session_id
        )
    out.print(table)
