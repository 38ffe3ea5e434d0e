"""``chatkeep chat [SESSION] [--model M]`` (SPEC 6.2): a chat in the terminal over the SDK.

Interactive on a terminal: replies stream as rendered Markdown; Ctrl-C stops the generation and
keeps its text (the server keeps it too: a cancelled reply is stored as it was); ``/new``,
``/sessions``, ``/model [NAME]``, ``/regenerate``, ``/quit``. With a piped standard input it
sends that one message and prints only the reply on standard output, for shell scripts.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table

from chatkeep import Client
from chatkeep.cli._connect import clean_errors, fail, open_client, resolve_session
from chatkeep.client._calls import new_id

REDRAW_S = 0.08
HELP = "/new  /sessions  /model [NAME]  /regenerate  /quit   (Ctrl-C stops a reply)"


def chat(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Argument(help="Id or unique id prefix.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model for replies.")] = None,
) -> None:
    """Chat with a model; without SESSION, a new chat."""
    client = open_client(ctx, deadline=60.0)
    with client, clean_errors(client):
        sid = resolve_session(client, session) if session else None
        if not sys.stdin.isatty():
            text = sys.stdin.read().strip()
            if not text:
                fail("nothing to send: standard input was empty")
            one_message(client, sid, text, model)
            return
        Repl(client, sid, model).run()


def one_message(client: Client, sid: str | None, text: str, model: str | None) -> None:
    """Only the reply goes to stdout, as it streams."""
    options: dict[str, Any] = {"model": model}
    if sid is None:
        sid, options["session"] = new_id(), {}
    with client.turns.stream(sid, text, **options) as stream:
        for piece in stream.text_deltas:
            sys.stdout.write(piece)
            sys.stdout.flush()
        stream.state.raise_for_error()
    sys.stdout.write("\n")


@dataclass
class LastTurn:
    message_id: str
    content: str


class Repl:
    def __init__(self, client: Client, sid: str | None, model: str | None) -> None:
        self.client, self.sid, self.model = client, sid, model
        self.console = Console(highlight=False)
        self.last: LastTurn | None = None

    def run(self) -> None:
        where = f"chat {self.sid}" if self.sid else "a new chat"
        self.console.print(f"[bold]chatkeep[/bold] {self.client.base_url}, {where}\n[dim]{HELP}[/]")
        if self.sid:
            for m in self.client.sessions.get(self.sid).messages[-6:]:
                self.console.print(f"[bold]{m.role}>[/bold]", Markdown(m.text))
        while True:
            try:
                line = self.console.input("[bold green]you>[/] ").strip()
            except (EOFError, KeyboardInterrupt):
                self.console.print()
                return
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return
                continue
            self.send(line)

    def command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        if name in ("/quit", "/exit"):
            return False
        if name == "/new":
            self.sid, self.last = None, None
            self.console.print("[dim]new chat[/]")
        elif name == "/sessions":
            table = Table("id", "title", "messages")
            for n, s in enumerate(self.client.sessions.list()):
                if n == 15:
                    break
                table.add_row(s.id, s.title or "(untitled)", str(s.last_seq))
            self.console.print(table)
        elif name == "/model":
            if arg.strip():
                self.model = arg.strip()
                self.console.print(f"[dim]model: {self.model}[/]")
            else:
                for m in self.client.models.list():
                    mark = "*" if m.id == self.model else " "
                    self.console.print(f"{mark} {m.id}  [dim]{m.name}[/]")
        elif name == "/regenerate":
            if self.last is None:
                self.console.print("[dim]nothing to regenerate yet[/]")
            else:
                # The same user message with a new reply id: a sibling reply (SPEC 4).
                self.send(self.last.content, message_id=self.last.message_id)
        else:
            self.console.print(f"[dim]unknown command {name}; {HELP}[/]")
        return True

    def send(self, content: str, *, message_id: str | None = None) -> None:
        options: dict[str, Any] = {"model": self.model, "id": message_id or new_id()}
        if self.sid is None:
            self.sid, options["session"] = new_id(), {}
        stream = self.client.turns.stream(self.sid, content, **options)
        self.last = LastTurn(options["id"], content)
        text, shown = "", 0.0
        with Live(Markdown(""), console=self.console, refresh_per_second=12) as live:
            try:
                for piece in stream.text_deltas:
                    text += piece
                    # Parsing the whole reply per delta would grow quadratically: a frame at most
                    # every REDRAW_S, and the last one after the loop.
                    if time.monotonic() - shown >= REDRAW_S:
                        live.update(Markdown(text))
                        shown = time.monotonic()
                live.update(Markdown(text))
            except KeyboardInterrupt:
                stream.close()
                self.client.turns.cancel(self.sid, stream.reply_id)
                live.update(Markdown(text + "\n\n*(stopped)*"))
                return
        final = stream.state.final
        if final is not None and final.type == "error":
            self.console.print(f"[red]the reply failed: {final.code}: {final.message}[/]")
