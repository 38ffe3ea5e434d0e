"""Dropped connections, resumed with ``Last-Event-ID`` (G6, and G1 for the re-sent turns).

A hundred turns stream short replies; each client hangs up at random byte offsets (between
events, inside an event, inside a UTF-8 character), up to three times per reply, and resumes
from the last whole ``delta`` it parsed, either by re-sending the same turn with the header
(what a fetch-based client does) or by attaching with ``GET .../messages/{id}/stream`` (what
``EventSource`` does). Joined by offset, what each client was shown must be exactly what the
upstream sent: no gap, no character twice. The re-sent turns must not start a second upstream
request, and the database must hold every message once, complete.

Against ``chatkeep serve --workers 2`` half of the resumes are sent on purpose to the process
that does not own the generation, which must follow the stored checkpoints instead of the live
relay. The cuts are seeded (see conftest.py).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from resilience_kit import (
    FAKE_MODEL,
    Read,
    Store,
    Target,
    WorkerPool,
    echo,
    new_accounts,
    read_stream,
    run_audit,
    server_env,
    start_server,
)

from chatkeep.settings import Settings
from support.checker import History, Verdict, check_stream
from support.factories import Account, new_id
from support.fake_upstream import FakeUpstream
from support.server import ServerThread

# ~20 chunks of 4 characters, one every 7 ms: a reply streams for about 150 ms.
CHUNK_CHARS = 4
TOKEN_INTERVAL_S = 0.007
# The bytes of a whole first answer (message, start, ~20 deltas, done), and of a resumed one:
# cuts are drawn below these, so most fall mid-stream and some after the end.
FIRST_ANSWER_BYTES = 3000
RESUMED_ANSWER_BYTES = 1600


@dataclass
class Plan:
    sessions: int  # chats, two per user; their turns run one after another
    turns: int  # per chat
    max_cuts: int  # per reply
    workers: int  # 0: a server in this process


@dataclass
class Stream:
    """One turn as its client lived it: every read, and the deltas joined in arrival order."""

    account: Account
    session_id: str
    message_id: str
    reply_id: str
    content: str
    reads: list[Read] = field(default_factory=list)
    owner: int | None = None  # the process that took the first request (and generates)
    resumes: list[tuple[str, bool]] = field(default_factory=list)  # (how, on the owner)

    @property
    def sent(self) -> str:
        return echo(self.content)

    @property
    def body(self) -> dict[str, Any]:
        return {
            "message": {"id": self.message_id, "content": self.content},
            "reply_id": self.reply_id,
            "session": {},
        }

    def deltas(self) -> list[tuple[int, str]]:
        return [delta for read in self.reads for delta in read.deltas()]

    @property
    def done(self) -> bool:
        return any(r.final is not None and r.final.event == "done" for r in self.reads)


def settings_for(db_url: str, fake: FakeUpstream, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=db_url,
        demo_model=False,
        ollama_autodetect=False,
        rate_limit_per_minute=0,
        openai_base_url=fake.base_url,
        openai_api_key="test",
        default_model=FAKE_MODEL,
    )


def preferring(owner: int | None, on_owner: bool) -> Callable[[int], bool]:
    return lambda pid: (pid == owner) == on_owner


async def play(stream: Stream, pool: WorkerPool, rng: random.Random, max_cuts: int) -> None:
    """Send the turn, hang up ``cuts`` times at random, resume each time, read to the end."""
    cuts = rng.randint(1, max_cuts)
    last_event_id: str | None = None
    for attempt in range(cuts + 4):
        cut_at = None
        if attempt < cuts:
            cut_at = rng.randrange(FIRST_ANSWER_BYTES if attempt == 0 else RESUMED_ANSWER_BYTES)
        how = "post" if attempt == 0 else rng.choice(["post", "get"])
        # Half the resumes go to the process that generates the reply, half elsewhere.
        on_owner = rng.random() < 0.5
        async with pool.lend(preferring(stream.owner, on_owner)) as (client, _):
            if how == "post":
                method, url, body = "POST", f"/api/sessions/{stream.session_id}/turns", stream.body
            else:
                method, body = "GET", None
                url = f"/api/sessions/{stream.session_id}/messages/{stream.reply_id}/stream"
            read = await read_stream(
                client,
                method,
                url,
                json_body=body,
                last_event_id=last_event_id,
                cut_at_byte=cut_at,
                account=stream.account,
                target=pool.target,
            )
        assert read.status == 200 and read.broken is None, (read.status, read.problem, read.broken)
        stream.reads.append(read)
        if attempt == 0:
            stream.owner = read.served_by
        else:
            stream.resumes.append((how, read.served_by == stream.owner))
        last_event_id = read.last_event_id
        if stream.done:
            return
    raise AssertionError(f"{stream.reply_id}: no done after {len(stream.reads)} reads")


async def run_streams(
    plan: Plan,
    target: Target,
    accounts: list[Account],
    rng: random.Random,
    history: History,
) -> list[Stream]:
    """Each chat sends its turns one after another (a turn waits for the previous reply);
    the chats run at once."""
    streams: list[Stream] = []

    async def chat(n: int, chat_rng: random.Random) -> None:
        session_id = new_id()
        for t in range(plan.turns):
            words = " ".join(f"{n}.{t}.{chat_rng.randrange(1000)}" for _ in range(5))
            stream = Stream(
                accounts[n // 2], session_id, new_id(), new_id(), f"résumé ✓ {words} ünïcødé"
            )
            streams.append(stream)
            history.attempt(stream.message_id, stream.content)
            history.text(stream.reply_id, sent=stream.sent, acknowledged=False)
            await play(stream, pool, chat_rng, plan.max_cuts)
            if any(e.event == "message" for r in stream.reads for e in r.events):
                history.ack(stream.message_id, stream.content)
            # ``done`` is sent once the reply is stored whole (G2).
            history.text(stream.reply_id, sent=stream.sent, durable=stream.sent, complete=True)

    # A pool a little larger than the chats, so that a preferred worker is usually free.
    pool = await WorkerPool.open(target, plan.sessions + 4, max(plan.workers, 1))
    try:
        # One generator per chat, so a chat's cuts do not depend on how the others interleave.
        await asyncio.gather(
            *(chat(n, random.Random(rng.randrange(2**32))) for n in range(plan.sessions))
        )
    finally:
        await pool.aclose()
    return streams


async def check_run(
    streams: list[Stream],
    history: History,
    store: Store,
    fake: FakeUpstream,
    env: dict[str, str],
) -> None:
    shown = Verdict()
    for stream in streams:
        shown += check_stream(stream.reply_id, stream.deltas(), stream.sent)
    assert shown.ok, f"what the clients were shown:\n{shown}\n{explain(streams, shown)}"
    for stream in streams:  # what a naive client shows: the delta texts in order
        assert "".join(text for _, text in stream.deltas()) == stream.sent
    cut_mid_stream = sum(1 for s in streams for r in s.reads if r.cut and r.final is None)
    assert cut_mid_stream >= len(streams) // 2, f"only {cut_mid_stream} cuts fell mid-stream"
    routes = [how for s in streams for how, _ in s.resumes]
    assert routes.count("post") >= 10 and routes.count("get") >= 10, routes

    rows = await store.messages()
    stored = history.check((m["id"], m["content"]) for m in rows)
    assert stored.ok, f"what the database holds:\n{stored}"
    assert stored.checked == 2 * len(streams) and stored.indeterminate == 0
    assert {m["status"] for m in rows if m["role"] == "assistant"} == {"complete"}
    # Every re-sent turn was a replay: one upstream request per turn (G1).
    assert fake.stats().chat_requests == len(streams)
    code, report = await asyncio.to_thread(run_audit, env)
    assert code == 0, report


def explain(streams: list[Stream], verdict: Verdict) -> str:
    """The reads of the first stream that the verdict names, to tell a server bug from a
    client one."""
    named = " ".join(verdict.lost + verdict.duplicated + verdict.unexpected)
    for stream in streams:
        if stream.reply_id in named:
            return (
                "\n".join(
                    f"read {n}: status={r.status} served_by={r.served_by} cut={r.cut} "
                    f"last_event_id={r.last_event_id} "
                    f"events={[(e.event, e.id, e.data.get('text')) for e in r.events]}"
                    for n, r in enumerate(stream.reads)
                )
                + f"\nresumes={stream.resumes}"
            )
    return ""


def assert_resumes_crossed_processes(streams: list[Stream]) -> None:
    """The multi-process run proved something: many resumes reached the process that does not
    own the generation, by both routes."""
    elsewhere = [how for s in streams for how, on_owner in s.resumes if not on_owner]
    assert elsewhere.count("post") >= 10 and elsewhere.count("get") >= 10, elsewhere


async def resume_in_process(
    plan: Plan,
    db_url: str,
    fake: FakeUpstream,
    tmp_path: Path,
    rng: random.Random,
    store_factory: Callable[[str], Store],
) -> None:
    accounts = await new_accounts(db_url, (plan.sessions + 1) // 2)
    fake.set(chunk_chars=CHUNK_CHARS, token_interval_s=TOKEN_INTERVAL_S)
    server = ServerThread(settings_for(db_url, fake, tmp_path / "data")).start()
    try:
        history = History()
        target = Target(server.url, accounts[0])
        streams = await run_streams(plan, target, accounts, rng, history)
    finally:
        server.stop()
    env = server_env(db_url, tmp_path / "data", fake)
    await check_run(streams, history, store_factory(db_url), fake, env)


async def resume_across_workers(
    plan: Plan,
    db_url: str,
    fake: FakeUpstream,
    tmp_path: Path,
    rng: random.Random,
    store_factory: Callable[[str], Store],
) -> None:
    accounts = await new_accounts(db_url, (plan.sessions + 1) // 2)
    fake.set(chunk_chars=CHUNK_CHARS, token_interval_s=TOKEN_INTERVAL_S)
    env = server_env(db_url, tmp_path / "data", fake)
    server = start_server(env, plan.workers, tmp_path / "server.log")
    try:
        assert server.proc is not None
        history = History()
        target = Target(server.url, accounts[0], pgid=server.proc.pid)
        streams = await run_streams(plan, target, accounts, rng, history)
    finally:
        server.stop()
    assert_resumes_crossed_processes(streams)
    await check_run(streams, history, store_factory(db_url), fake, env)


@pytest.mark.slow
async def test_resumed_streams_in_one_process_miss_and_repeat_nothing(
    db_url: str,
    fake: FakeUpstream,
    tmp_path: Path,
    rng: random.Random,
    store_factory: Callable[[str], Store],
) -> None:
    """100 replies, each cut 1-3 times and resumed from the live relay: byte for byte."""
    plan = Plan(sessions=10, turns=10, max_cuts=3, workers=0)
    await resume_in_process(plan, db_url, fake, tmp_path, rng, store_factory)


@pytest.mark.slow
async def test_resumed_streams_across_workers_miss_and_repeat_nothing(
    db_url: str,
    fake: FakeUpstream,
    tmp_path: Path,
    rng: random.Random,
    store_factory: Callable[[str], Store],
) -> None:
    """100 replies on two worker processes, half the resumes sent to the process that does not
    generate the reply (it follows the stored checkpoints): byte for byte."""
    plan = Plan(sessions=10, turns=10, max_cuts=3, workers=2)
    await resume_across_workers(plan, db_url, fake, tmp_path, rng, store_factory)


@pytest.mark.chaos
async def test_many_resumed_streams_across_workers(
    db_url: str,
    fake: FakeUpstream,
    tmp_path: Path,
    rng: random.Random,
    store_factory: Callable[[str], Store],
) -> None:
    """600 replies on three workers, up to six cuts each."""
    plan = Plan(sessions=20, turns=30, max_cuts=6, workers=3)
    await resume_across_workers(plan, db_url, fake, tmp_path, rng, store_factory)


@pytest.mark.chaos
async def test_many_resumed_streams_in_one_process(
    db_url: str,
    fake: FakeUpstream,
    tmp_path: Path,
    rng: random.Random,
    store_factory: Callable[[str], Store],
) -> None:
    """600 replies in one process, up to six cuts each."""
    plan = Plan(sessions=20, turns=30, max_cuts=6, workers=0)
    await resume_in_process(plan, db_url, fake, tmp_path, rng, store_factory)


def test_check_stream_flags_gaps_repeats_and_foreign_text() -> None:
    """The checker itself: a verdict that cannot fail proves nothing."""
    sent = "Echo: héllo"
    assert check_stream("r", [(4, "Echo"), (11, ": héllo")], sent).ok
    gap = check_stream("r", [(4, "Echo"), (11, "llo")], sent)
    assert gap.lost and not gap.duplicated
    repeat = check_stream("r", [(4, "Echo"), (6, "o:"), (11, " héllo")], sent)
    assert repeat.duplicated and not repeat.lost
    foreign = check_stream("r", [(4, "Ecco")], sent, complete=False)
    assert foreign.unexpected and not foreign.lost
    short = check_stream("r", [(4, "Echo")], sent)
    assert short.lost and check_stream("r", [(4, "Echo")], sent, complete=False).ok
