"""``chatkeep audit``: exit 0 when every check is clean, 1 when any finds something."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chatkeep.cli._common import run_with_db
from chatkeep.store.audit import Finding, run_audit
from chatkeep.store.engine import Database

out = Console()


def audit(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    limit: Annotated[int, typer.Option(help="Rows to show per check.")] = 20,
) -> None:
    """Check the database for duplicates, session spikes, seq gaps, orphans and broken trees."""

    async def work(db: Database) -> list[Finding]:
        return await db.read(run_audit, limit=limit)

    findings = run_with_db(work)
    bad = [f for f in findings if f.rows]
    if as_json:
        payload = {f.check: {"description": f.description, "rows": f.rows} for f in findings}
        print(json.dumps({"ok": not bad, "checks": payload}, default=str, indent=2))
    else:
        table = Table("check", "what it looks for", "found")
        for f in findings:
            table.add_row(
                f.check,
                f.description,
                f"[red]{len(f.rows)}[/red]" if f.rows else "[green]0[/green]",
            )
        out.print(table)
        for f in bad:
            out.print(f"[bold red]{f.check}[/bold red]: {f.rows}")
    raise typer.Exit(1 if bad else 0)
