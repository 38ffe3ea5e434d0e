"""``python -m bench.peers [--quick] [--db sqlite|postgres|both] [--no-openwebui]``

Side by side, interleaved in one run (one of each case per round, in a rotating order):

- store level: chatkeep's ``append_message`` / active-path load through ``Database`` against
  LangChain's ``SQLChatMessageHistory.add_message`` / ``.messages`` (langchain-community, in its
  own virtualenv, driven over a pipe and timed inside that process), on SQLite (WAL,
  ``synchronous=FULL`` for both) and PostgreSQL (fsync and synchronous_commit on);
- HTTP: chatkeep's ``PUT /api/sessions/{id}/messages/{id}`` and ``GET /api/sessions/{id}``
  against Open WebUI 0.12.x's save call ``POST /api/v1/chats/{id}`` (the whole chat, as its page
  sends it) and ``GET /api/v1/chats/{id}``, both on SQLite FULL, both with real auth, both
  round trips from the same httpx client.

Appends go into chats already holding 0, 100, 1,000 (and 10,000 at the store level) messages;
loads read chats of 50 and 1,000. Prints the table, writes ``bench/results/peers-*.json`` and
draws ``docs/performance-append.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench._common import (
    REPO,
    Context,
    DbKind,
    Result,
    Rows,
    environment,
    interleaved,
    start_postgres,
    write_results,
)
from bench._fixtures import TEXT, create_session, fill_messages, new_message, serve, setup_users
from bench.peers.openwebui import OpenWebUI
from chatkeep.store import messages, sessions
from chatkeep.store.engine import Database
from support.factories import new_id

NAME = "peers"
TITLE = "chatkeep and its peers, interleaved in one run"
CAPTION = (
    "x baseline: chatkeep's figure over the peer's (below 1: chatkeep is faster). Issue 6 "
    "target: store append p50 <= 1.0x LangChain's add_message at the same durability."
)
SCRATCH = Path(os.environ.get("CHATKEEP_BENCH_SCRATCH", "/tmp/chatkeep-bench"))
VENVS = SCRATCH / "venvs"
PLOT = REPO / "docs" / "performance-append.png"
STORE_HELD = (0, 100, 1_000, 10_000)
HTTP_HELD = (0, 100, 1_000)
LOADS = (50, 1_000)
HERE = Path(__file__).parent

# Each peer's virtualenv: what to pip-install, in order (torch first, from the CPU wheel).
PEER_VENVS: dict[str, list[list[str]]] = {
    "langchain": [
        ["langchain-community", "sqlalchemy[asyncio]>=2", "psycopg[binary]", "matplotlib"]
    ],
    "owui": [["torch==2.13.0"], ["open-webui>=0.12,<0.13"]],
}


def ensure_venv(name: str, console: Console) -> Path:
    venv = VENVS / name
    marker = venv / ".chatkeep-bench-installed"
    if marker.exists():
        return venv
    console.print(f"[dim]installing the {name} peer into {venv} (first run only) ...")
    VENVS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    for packages in PEER_VENVS[name]:
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", *packages], check=True, timeout=3600
        )
    marker.touch()
    return venv


class LangChainPeer:
    """The worker process in the LangChain virtualenv (``langchain_worker.py``)."""

    def __init__(self, venv: Path) -> None:
        self.venv = venv
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LangChainPeer:
        self.proc = await asyncio.create_subprocess_exec(
            str(self.venv / "bin" / "python"),
            str(HERE / "langchain_worker.py"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**20,
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                await self.ask({"cmd": "quit"}, answer=False)
            except ConnectionError:
                pass
            await self.proc.wait()

    async def ask(self, request: dict[str, Any], *, answer: bool = True) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        await self.proc.stdin.drain()
        if not answer:
            return {}
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the LangChain worker exited")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply


def append_case(system: str, held: int) -> str:
    return f"{system}: append, chat of {held:,}"


def load_case(system: str, size: int) -> str:
    return f"{system}: load {size:,} messages"


def psycopg_url(asyncpg_url: str) -> str:
    return asyncpg_url.replace("postgresql+asyncpg://", "postgresql+psycopg://", 1)


async def store_level(ctx: Context, venv: Path) -> list[Result]:
    n, warmup = ctx.scale(150, 25), 5
    url = ctx.new_database("peers_ck")
    lc_url = ctx.new_database("peers_lc")
    if ctx.db == "sqlite":
        lc_url = lc_url.replace("sqlite+aiosqlite:", "sqlite:", 1)
    else:
        lc_url = psycopg_url(lc_url)
    db, accounts = await setup_users(url, "bench")
    user_pk = accounts["bench"].user_pk
    held = {f"a{h}": h for h in STORE_HELD} | {f"l{s}": s for s in LOADS}
    chats: dict[str, str] = {}
    try:
        for name, count in held.items():
            chats[name] = await create_session(db, user_pk, name)
            await fill_messages(db, user_pk, chats[name], count)
        async with LangChainPeer(venv) as peer:
            await peer.ask({"cmd": "setup", "url": lc_url, "chats": held})
            ops: dict[str, Any] = {}
            for h in STORE_HELD:
                ops[append_case("chatkeep", h)] = _ck_append(db, user_pk, chats[f"a{h}"])
                ops[f"_lc_append_{h}"] = _lc(peer, "append", f"a{h}", append_case("LangChain", h))
            for s in LOADS:
                ops[load_case("chatkeep", s)] = _ck_load(db, user_pk, chats[f"l{s}"], s)
                ops[f"_lc_load_{s}"] = _lc(peer, "load", f"l{s}", load_case("LangChain", s))
            samples = await interleaved(ops, n=n, warmup=warmup)
    finally:
        await db.dispose()
    rows = Rows(NAME, ctx.db)
    for h in STORE_HELD:
        peer_case = append_case("LangChain", h)
        rows.add(peer_case, samples[peer_case], layer="store", note="baseline")
        rows.add(
            append_case("chatkeep", h),
            samples[append_case("chatkeep", h)],
            layer="store",
            vs=peer_case,
        )
    for s in LOADS:
        peer_case = load_case("LangChain", s)
        rows.add(peer_case, samples[peer_case], layer="store", note="baseline")
        rows.add(
            load_case("chatkeep", s), samples[load_case("chatkeep", s)], layer="store", vs=peer_case
        )
    return rows.results


def _ck_append(db: Database, user_pk: int, session_id: str) -> Any:
    async def op() -> None:
        msg = new_message()
        await db.write(messages.append_message, user_pk=user_pk, session_id=session_id, msg=msg)

    return op


def _ck_load(db: Database, user_pk: int, session_id: str, size: int) -> Any:
    def load(conn: Any) -> int:
        row = sessions.live_session(conn, user_pk, session_id)
        return len(messages.active_path(conn, row))

    async def op() -> None:
        got = await db.read(load)
        if got != size:
            raise RuntimeError(f"chatkeep loaded {got} messages, not {size}")

    return op


def _lc(peer: LangChainPeer, cmd: str, chat: str, series: str) -> Any:
    async def op() -> dict[str, float]:
        reply = await peer.ask({"cmd": cmd, "chat": chat})
        return {series: float(reply["s"])}

    return op


async def http_level(ctx: Context, venv: Path) -> list[Result]:
    n, warmup = ctx.scale(60, 12), 3
    url = ctx.new_database("peers_http")
    db, accounts = await setup_users(url, "bench")
    user = accounts["bench"]
    ck: dict[str, str] = {}
    try:
        for h in HTTP_HELD:
            ck[f"a{h}"] = await create_session(db, user.user_pk, f"a{h}")
            await fill_messages(db, user.user_pk, ck[f"a{h}"], h)
        for s in LOADS:
            ck[f"l{s}"] = await create_session(db, user.user_pk, f"l{s}")
            await fill_messages(db, user.user_pk, ck[f"l{s}"], s)
    finally:
        await db.dispose()
    async with (
        serve(url, ctx.workdir, user) as srv,
        OpenWebUI(venv, ctx.workdir) as owui,
    ):
        chats = {f"a{h}": await owui.new_chat(h, TEXT) for h in HTTP_HELD}
        chats |= {f"l{s}": await owui.new_chat(s, TEXT) for s in LOADS}
        ops: dict[str, Any] = {}
        for h in HTTP_HELD:
            sid = ck[f"a{h}"]

            async def ck_append(sid: str = sid) -> None:
                path = f"/api/sessions/{sid}/messages/{new_id()}"
                await srv.call("PUT", path, 201, json={"role": "user", "content": TEXT})

            async def ow_append(chat: Any = chats[f"a{h}"]) -> None:
                await owui.append(chat, TEXT)

            ops[append_case("chatkeep", h)] = ck_append
            ops[append_case("Open WebUI", h)] = ow_append
        for s in LOADS:
            sid = ck[f"l{s}"]

            async def ck_load(sid: str = sid) -> None:
                await srv.call("GET", f"/api/sessions/{sid}", 200)

            async def ow_load(chat: Any = chats[f"l{s}"], s: int = s) -> None:
                if await owui.load(chat) != s:
                    raise RuntimeError("Open WebUI loaded another number of messages")

            ops[load_case("chatkeep", s)] = ck_load
            ops[load_case("Open WebUI", s)] = ow_load
        samples = await interleaved(ops, n=n, warmup=warmup)
    rows = Rows(NAME, ctx.db)
    cases = [(append_case, h) for h in HTTP_HELD] + [(load_case, s) for s in LOADS]
    for case, arg in cases:
        peer_case = case("Open WebUI", arg)
        rows.add(peer_case, samples[peer_case], layer="http", note="baseline")
        rows.add(case("chatkeep", arg), samples[case("chatkeep", arg)], layer="http", vs=peer_case)
    return rows.results


def plot(results: list[Result], lc_venv: Path, console: Console) -> None:
    """Append latency (p50) against chat length, one line per system and layer."""
    series: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        if ": append, chat of " not in r.case:
            continue
        system, _, held = r.case.partition(": append, chat of ")
        label = f"{system} ({r.layer}, {r.db})"
        series.setdefault(label, []).append((int(held.replace(",", "")), r.stats.p50))
    data = json.dumps({"series": series, "out": str(PLOT)})
    done = subprocess.run(
        [str(lc_venv / "bin" / "python"), str(HERE / "plot.py")],
        input=data,
        text=True,
        capture_output=True,
        timeout=120,
    )
    if done.returncode != 0:
        console.print(f"[red]plot failed: {done.stderr[-2000:]}")
    else:
        console.print(f"[dim]drew {PLOT}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small counts")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--no-openwebui", action="store_true", help="skip the HTTP comparison")
    parser.add_argument("--no-plot", action="store_true", help="do not redraw the PNG")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.__main__ import render  # the same table as every other benchmark

    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=220)
    databases: tuple[DbKind, ...] = (
        ("sqlite", "postgres") if args.db == "both" else (args.db,)  # type: ignore[assignment]
    )
    began, started_at = time.monotonic(), datetime.now(UTC)
    lc_venv = ensure_venv("langchain", console)
    owui_venv: Path | None = None
    errors: list[str] = []
    if not args.no_openwebui:
        try:
            owui_venv = ensure_venv("owui", console)
        except (subprocess.SubprocessError, OSError) as exc:
            errors.append(f"Open WebUI could not be installed: {exc}")
    workdir = Path(tempfile.mkdtemp(prefix="chatkeep-peers-"))
    cluster = start_postgres() if "postgres" in databases else None
    results: list[Result] = []
    try:
        env = environment(cluster)
        for db in databases:
            ctx = Context(db=db, quick=args.quick, workdir=workdir / f"store-{db}", cluster=cluster)
            ctx.workdir.mkdir(parents=True)
            console.print(f"[dim]store level on {db} ...")
            results.extend(asyncio.run(store_level(ctx, lc_venv)))
        if owui_venv is not None and "sqlite" in databases:
            ctx = Context(db="sqlite", quick=args.quick, workdir=workdir / "http", cluster=cluster)
            ctx.workdir.mkdir(parents=True)
            console.print("[dim]HTTP against Open WebUI on sqlite (its start takes a while) ...")
            try:
                results.extend(asyncio.run(http_level(ctx, owui_venv)))
            except Exception as exc:  # keep the store-level figures
                console.print_exception()
                errors.append(f"Open WebUI run failed: {exc}")
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - began
    console.print(render(sys.modules[__name__], results, seconds))
    payload = {
        "benchmark": NAME,
        "title": TITLE,
        "caption": CAPTION,
        "started_at": started_at.isoformat(),
        "duration_s": round(seconds, 3),
        "quick": args.quick,
        "databases": list(databases),
        "errors": errors,
        "environment": env,
        "results": [r.to_json() for r in results],
    }
    console.print(f"[dim]wrote {write_results(NAME, payload, started=started_at)}")
    if not args.no_plot and results:
        plot(results, lc_venv, console)
    for error in errors:
        console.print(f"[red]{error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
