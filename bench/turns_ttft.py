"""Time to first token through chatkeep, against the same request sent straight to the upstream.

A real ``chatkeep serve`` (a subprocess) streams from the fake OpenAI-compatible upstream of the
test suite (``tests/support/fake_upstream.py``, another subprocess, ``ttft_s`` = 50 ms, a short
reply). Each round, interleaved in a rotating order:

- ``direct``: the chat completion request chatkeep itself sends (its body is read back from the
  fake's ``/_requests`` after the warm-up) is sent with httpx straight to the fake; timed from the
  request to its first content chunk, and to ``data: [DONE]``;
- ``chatkeep``: ``POST /api/sessions/{sid}/turns`` with an API key, into a session of its own
  created before the clock starts; timed from the request to the first ``delta`` event, and to
  ``done`` (which chatkeep sends only once the finished reply is committed);
- the commit floor: one single-row INSERT straight through the driver into the same database, in
  a transaction of its own (``bench/store_append.py``'s baseline): what one durable commit costs
  here. On SQLite (WAL, ``synchronous=FULL``) that is an fsync; on PostgreSQL (``fsync`` and
  ``synchronous_commit`` on) a WAL flush.

The ``added`` rows are paired differences, chatkeep minus direct of the same round. What chatkeep
adds before the first token: the API-key lookup (a read), the turn's one write transaction (user
message and empty reply, committed before the model is asked: G2), building the prompt, and its
own hop to the upstream through the ``openai`` SDK. After the last token: the finished reply's
commit (a checkpoint-writer tick, woken at once by the finish), then ``done``.

The helpers at the bottom (the two subprocesses, /proc readings, a lean SSE parser, bulk sessions)
are shared with ``bench/turns_streams.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import httpx
from sqlalchemy import insert

from bench._common import REPO, Context, Result, Rows, TimeBelow, interleaved
from bench._fixtures import setup_users
from bench.store_append import RAW, driver_insert
from chatkeep.store import sessions
from chatkeep.store.tables import utcnow
from support.factories import new_id
from support.server import free_port

NAME = "turns_ttft"
TITLE = "time to first token and a whole short turn: chatkeep vs the upstream straight"
CAPTION = (
    "Target: chatkeep adds < 5 ms to the time to first token (p50 of the paired difference; it "
    "includes the turn's commit, one fsync on SQLite with synchronous=FULL, a WAL flush on "
    "PostgreSQL: compare the commit-floor row). Fake upstream ttft_s=50 ms; client, chatkeep "
    "and fake are three processes sharing the same 2 busy cores."
)

MODEL = "fake-model"
PROMPT = "Say hello in one short sentence, please."
REPLY = "Hello! It is nice to meet you. How can I help?"  # 12 chunks of 4 characters
TTFT_S = 0.05

COMMIT = "commit floor: raw 1-row INSERT (driver)"
TTFT_DIRECT = "TTFT direct (httpx -> fake)"
TTFT_CK = "TTFT via chatkeep (POST turns -> delta)"
TTFT_ADDED = "TTFT added by chatkeep (paired)"
WHOLE_DIRECT = "whole turn direct (-> [DONE])"
WHOLE_CK = "whole turn via chatkeep (-> done)"
WHOLE_ADDED = "whole turn added by chatkeep (paired)"


async def run(ctx: Context) -> list[Result]:
    n, warmup = ctx.scale(200, 20), ctx.scale(20, 5)
    url = ctx.new_database("ttft")
    db, accounts = await setup_users(url, "bench")
    user = accounts["bench"]
    try:
        session_ids = await bulk_sessions(db, user.user_pk, n + warmup + 1)
        await db.write(RAW.metadata.create_all)
    finally:
        await db.dispose()
    seqs = itertools.count(1)
    async with (
        FakeUpstreamProcess(ctx.workdir) as fake,
        ChatkeepProcess(url, fake, ctx.workdir) as server,
        driver_insert(url, seqs) as raw_insert,
        httpx.AsyncClient(base_url=server.url, headers=user.headers, timeout=30) as ck,
        httpx.AsyncClient(base_url=fake.base_url, timeout=30) as direct_client,
    ):
        await fake.control(reset=True, reply=REPLY, chunk_chars=4, ttft_s=TTFT_S)
        ids = iter(session_ids)
        first = await chatkeep_turn(ck, next(ids))  # the request chatkeep sends upstream
        if first.text != REPLY:
            raise RuntimeError(f"chatkeep relayed {first.text!r}, the fake sent {REPLY!r}")
        body = (await fake.requests())[-1]

        async def via_chatkeep() -> dict[str, float]:
            turn = await chatkeep_turn(ck, next(ids))
            if turn.text != REPLY:
                raise RuntimeError(f"chatkeep relayed {turn.text!r}, the fake sent {REPLY!r}")
            return {TTFT_CK: turn.first, WHOLE_CK: turn.whole}

        async def direct() -> dict[str, float]:
            first_s, whole_s = await direct_completion(direct_client, body)
            return {TTFT_DIRECT: first_s, WHOLE_DIRECT: whole_s}

        ops = {"_direct": direct, "_chatkeep": via_chatkeep, COMMIT: raw_insert}
        before = await server.metrics(direct_client)
        samples = await interleaved(ops, n=n, warmup=warmup)
        after = await server.metrics(direct_client)
    return report(ctx, samples, server_side(before, after))


TURN_ROUTE = 'method="POST",route="/api/sessions/{session_id}/turns"'


def server_side(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Means over the warm-up and timed rounds, from chatkeep's own histograms: a turn request
    until its response starts (auth + the turn's transaction), and a generation's start until
    its first token (the hop upstream, the fake's ttft_s included)."""

    def mean(name: str, labels: str = "") -> float:
        labels = f"{{{labels}}}" if labels else ""
        count, total = f"{name}_count{labels}", f"{name}_sum{labels}"
        n = after.get(count, 0.0) - before.get(count, 0.0)
        return (after.get(total, 0.0) - before.get(total, 0.0)) / n if n else float("nan")

    return {
        "turn_headers": mean("chatkeep_request_seconds", TURN_ROUTE),
        "first_token": mean("chatkeep_time_to_first_token_seconds"),
    }


def report(ctx: Context, samples: dict[str, list[float]], server: dict[str, float]) -> list[Result]:
    rows = Rows(NAME, ctx.db)
    durability = "an fsync (synchronous=FULL)" if ctx.db == "sqlite" else "a WAL flush"
    rows.add(COMMIT, samples[COMMIT], layer="driver", note=f"one durable commit: {durability}")
    rows.add(TTFT_DIRECT, samples[TTFT_DIRECT], layer="http", note="baseline")
    rows.add(TTFT_CK, samples[TTFT_CK], layer="http", vs=TTFT_DIRECT)
    added = paired(samples[TTFT_CK], samples[TTFT_DIRECT])
    rows.add(
        TTFT_ADDED,
        added,
        layer="http",
        vs=COMMIT,
        targets=[TimeBelow(5, stat="p50", source="one commit + a hop")],
        note=(
            f"server-side means: request -> response start {server['turn_headers'] * 1000:.1f} "
            f"ms (auth + the turn's transaction), generation -> first token "
            f"{server['first_token'] * 1000:.1f} ms (direct TTFT mean "
            f"{sum(samples[TTFT_DIRECT]) / len(samples[TTFT_DIRECT]) * 1000:.1f} ms)"
        ),
    )
    rows.add(WHOLE_DIRECT, samples[WHOLE_DIRECT], layer="http", note=f"{len(REPLY) // 4} chunks")
    rows.add(WHOLE_CK, samples[WHOLE_CK], layer="http", vs=WHOLE_DIRECT)
    rows.add(
        WHOLE_ADDED,
        paired(samples[WHOLE_CK], samples[WHOLE_DIRECT]),
        layer="http",
        vs=COMMIT,
        note="adds the finished reply's commit (a woken writer tick) before done",
    )
    return rows.results


def paired(case: list[float], base: list[float]) -> list[float]:
    """Per-round differences: both were timed in the same round, one after the other."""
    return [c - b for c, b in zip(case, base, strict=True)]


# ---------------------------------------------------------------------------------------------
# One turn through chatkeep, one completion straight from the fake


@dataclass
class TurnTiming:
    first: float  # seconds from the request to the first delta event
    whole: float  # ... to the done event
    text: str


async def chatkeep_turn(client: httpx.AsyncClient, session_id: str) -> TurnTiming:
    body = {"message": {"id": new_id(), "content": PROMPT}}
    parser = SSEParser()
    parts: list[str] = []
    first = whole = None
    started = perf_counter()
    async with client.stream("POST", f"/api/sessions/{session_id}/turns", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"turn: {response.status_code} {response.text[:300]}")
        async for chunk in response.aiter_raw():
            now = perf_counter()
            for name, _event_id, data in parser.feed(chunk):
                if name == b"delta":
                    if first is None:
                        first = now - started
                    parts.append(json.loads(data)["text"])
                elif name == b"done":
                    whole = now - started
                elif name == b"error":
                    raise RuntimeError(f"turn ended with an error: {data[:300]!r}")
    if first is None or whole is None:
        raise RuntimeError("the turn's stream ended without a delta and a done event")
    return TurnTiming(first, whole, "".join(parts))


async def direct_completion(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, float]:
    """The same streamed chat completion straight to the fake: (first content chunk, [DONE])."""
    parser = SSEParser()
    first = whole = None
    started = perf_counter()
    async with client.stream("POST", "/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"fake: {response.status_code} {response.text[:300]}")
        async for chunk in response.aiter_raw():
            now = perf_counter()
            for _name, _event_id, data in parser.feed(chunk):
                if data == b"[DONE]":
                    whole = now - started
                elif first is None and chunk_text(data):
                    first = now - started
    if first is None or whole is None:
        raise RuntimeError("the fake's stream ended without content and [DONE]")
    return first, whole


def chunk_text(data: bytes) -> str:
    """The content of an OpenAI ``chat.completion.chunk`` (choice 0), or ''."""
    if b'"content"' not in data:
        return ""
    for choice in json.loads(data).get("choices", ()):
        if choice.get("index") == 0:
            return str((choice.get("delta") or {}).get("content") or "")
    return ""


# ---------------------------------------------------------------------------------------------
# Shared with turns_streams: a lean SSE parser


class SSEParser:
    """Incremental ``text/event-stream`` parsing over raw bytes: yields ``(event, id, data)``
    per event (``event`` defaults to ``message``). Lines may end in ``\\r\\n`` (sse-starlette)
    or ``\\n`` (the fake); comment lines are skipped; one ``data:`` line per event is enough
    for both servers here."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes, bytes]]:
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            # A "\r" at the very end may be the first half of "\r\n": keep it for the next chunk.
            keep = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n")
            if keep:
                buffer, tail = buffer[:-1], b"\r"
            else:
                tail = b""
        else:
            tail = b""
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop() + tail
        events = []
        for block in blocks:
            name, event_id, data = b"message", b"", b""
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data = line[5:].lstrip(b" ")
                elif line.startswith(b"event:"):
                    name = line[6:].strip()
                elif line.startswith(b"id:"):
                    event_id = line[3:].strip()
            if data or name != b"message":
                events.append((name, event_id, data))
        return events


# ---------------------------------------------------------------------------------------------
# Shared with turns_streams: the fake upstream and chatkeep as subprocesses


class FakeUpstreamProcess:
    """``python -m tests.support.fake_upstream --port 0`` in a process (and session) of its own;
    the first line it prints is its base URL. Driven over HTTP: ``/_control``, ``/_stats``."""

    def __init__(self, workdir: Path) -> None:
        self.log_path = workdir / "fake-upstream.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._control: httpx.AsyncClient | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    async def __aenter__(self) -> FakeUpstreamProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.fake_upstream", "--port", "0"],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        self.proc.stdout.close()
        self.base_url = line.decode().strip()
        if not self.base_url.startswith("http"):
            await self.__aexit__()
            raise RuntimeError(f"fake upstream did not start: {line!r}; see {self.log_path}")
        self._control = httpx.AsyncClient(base_url=self.root, timeout=30)
        return self

    async def control(self, **knobs: Any) -> dict[str, Any]:
        assert self._control is not None
        response = await self._control.post("/_control", json=knobs)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def stats(self) -> dict[str, Any]:
        assert self._control is not None
        result: dict[str, Any] = (await self._control.get("/_stats")).json()
        return result

    async def requests(self) -> list[dict[str, Any]]:
        assert self._control is not None
        result: list[dict[str, Any]] = (await self._control.get("/_requests")).json()
        return result

    async def __aexit__(self, *exc: object) -> None:
        if self._control is not None:
            await self._control.aclose()
        await stop_process(self.proc)


# Run in the server process before chatkeep's CLI: counts committed transactions by kind (a
# write is one that ``Database.write`` opened) and shows them at /metrics. SQLite keeps no such
# counter that another process can read; this is chatkeep's own engine counting its commits.
_COUNTING_LAUNCHER = """
from prometheus_client import Counter
from sqlalchemy import event
from sqlalchemy.engine import Engine

_tx = Counter("bench_db_transactions", "Transactions committed, by kind.", ["kind"])
_write, _read = _tx.labels("write"), _tx.labels("read")


def _count(conn):
    (_write if conn.get_execution_options().get("chatkeep_write") else _read).inc()


event.listen(Engine, "commit", _count)
from chatkeep.cli.main import app

app(prog_name="chatkeep")
"""
_PLAIN_LAUNCHER = "from chatkeep.cli.main import app; app(prog_name='chatkeep')"


@dataclass
class ChatkeepProcess:
    """``chatkeep serve`` (one worker: the server is this one process) over ``database_url``,
    with the fake as its only provider, in a process group of its own (as
    ``tests/support/server.py:ServerProcess`` runs it). ``count_transactions`` adds the
    commit counter above; otherwise it is exactly the CLI."""

    database_url: str
    fake: FakeUpstreamProcess
    workdir: Path
    count_transactions: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CHATKEEP_") and k != "PROMETHEUS_MULTIPROC_DIR"
        }
        env.update(
            CHATKEEP_DATA_DIR=str(self.workdir / "data"),
            CHATKEEP_DATABASE_URL=self.database_url,
            CHATKEEP_OPENAI_BASE_URL=self.fake.base_url,
            CHATKEEP_OPENAI_API_KEY="bench-key",
            CHATKEEP_DEMO_MODEL="false",
            CHATKEEP_OLLAMA_AUTODETECT="false",
            CHATKEEP_DEFAULT_MODEL=MODEL,
            CHATKEEP_RATE_LIMIT_PER_MINUTE="0",
        )
        return env

    async def __aenter__(self) -> ChatkeepProcess:
        launcher = _COUNTING_LAUNCHER if self.count_transactions else _PLAIN_LAUNCHER
        args = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with open(self.workdir / "chatkeep.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", launcher, *args],
                cwd=REPO,
                env=self.env(),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            await self._wait_ready()
        except BaseException:
            await stop_process(self.proc)
            raise
        return self

    async def _wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None
        deadline = perf_counter() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"chatkeep serve exited with {self.proc.returncode}; "
                        f"see {self.workdir / 'chatkeep.log'}"
                    )
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("chatkeep serve did not become ready")

    async def metrics(self, client: httpx.AsyncClient) -> dict[str, float]:
        """Every sample at /metrics, by its name with labels as printed."""
        text = (await client.get(f"{self.url}/metrics")).text
        found = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    async def transactions(self, client: httpx.AsyncClient) -> dict[str, float]:
        """The launcher's commit counter, by kind."""
        found = await self.metrics(client)
        return {
            kind: found.get(f'bench_db_transactions_total{{kind="{kind}"}}', 0.0)
            for kind in ("write", "read")
        }

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self.workdir / "chatkeep.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def log_problems(self) -> str:
        """The server log's errors, by their last line (the exception), most common first."""
        try:
            lines = (self.workdir / "chatkeep.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        found = Counter(
            line.strip()[:100]
            for line in lines
            if line and not line[0].isspace() and ("Error" in line or "Exception" in line)
        )
        return ", ".join(f"{count} x {text}" for text, count in found.most_common(3))

    async def __aexit__(self, *exc: object) -> None:
        await stop_process(self.proc)


async def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the process group we started (its id is the process's), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        await asyncio.wait_for(asyncio.to_thread(proc.wait), 15)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)


# ---------------------------------------------------------------------------------------------
# Shared with turns_streams: /proc readings

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def _group(pgid: int) -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(int(entry))[2]) == pgid:
                    yield int(entry)
            except (OSError, ValueError, IndexError):
                continue


def cpu_seconds(pgid: int) -> float:
    """utime + stime of every process in the group (all their threads), in seconds."""
    ticks = 0
    for pid in _group(pgid):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return ticks / CLOCK_TICKS


def status_kb(pid: int, name: str) -> int:
    """A ``/proc/<pid>/status`` figure in kB: VmRSS, VmHWM, ..."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` 5, Linux 4.0+); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Shared with turns_streams: empty sessions in bulk


async def bulk_sessions(db: Any, user_pk: int, count: int) -> list[str]:
    """``count`` empty sessions in one transaction, as ``PUT /api/sessions/{id}`` leaves them."""
    ids = [new_id() for _ in range(count)]
    now = utcnow()
    rows = [
        {
            "user_pk": user_pk,
            "id": session_id,
            "title": f"bench {i}",
            "model": None,
            "pinned": False,
            "archived": False,
            "active_leaf_id": None,
            "last_seq": 0,
            "request_hash": secrets.token_hex(32),
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
        }
        for i, session_id in enumerate(ids)
    ]

    def work(conn: Any) -> None:
        for start in range(0, len(rows), 1000):
            conn.execute(insert(sessions.S), rows[start : start + 1000])

    await db.write(work)
    return ids
