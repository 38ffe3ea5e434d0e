"""Streams: what relaying a token costs chatkeep, and N concurrent streams at 20 tokens/s.

``chatkeep serve`` and the fake OpenAI-compatible upstream run as subprocesses (as in
``turns_ttft``); the clients run in this process (httpx, a lean SSE parser, one connection per
stream). chatkeep's server is started through a launcher that counts its committed transactions
(``bench_db_transactions_total{kind}`` at ``/metrics``, from a SQLAlchemy ``commit`` listener);
apart from that listener it is the CLI's ``serve``.

(a) CPU per relayed token. Rounds of a batch of concurrent turns paced at 50 tokens/s each: a
short reply (10 tokens) and a long one; the CPU time (utime + stime from ``/proc``, all threads)
of chatkeep's process group and of the fake's is read before and after each batch. Per token is
the marginal cost, (long - short) / extra tokens, so a turn's fixed cost (its commit, the
request) is not spread over the tokens; that fixed part is its own row. The fake's own figures
(it sends what chatkeep parses) are the baseline.

(b) N concurrent streams (1,000; 50 with --quick) at 20 tokens/s (4 characters each) for ~10 s,
started evenly over a ramp, plus a few streams straight from the fake as the baseline of lag.
Measured over the steady window (every stream has its first token, none has finished; when an
overloaded run has no such window, the middle half of the run, and the table says so):
chatkeep's CPU % (of one core), its database write transactions per second (the launcher's
counter; on PostgreSQL also the cluster's xid counter,
``pg_snapshot_xmax(pg_current_snapshot())``, which only write transactions advance, and its WAL
bytes), and its peak RSS (``VmHWM``, reset with ``clear_refs`` just before) above
its idle RSS, per stream. Each client records, per token i, its lag: the arrival of the delta
holding it minus the fake's schedule ``sent + ttft + i * interval`` (so it includes chatkeep's
time to first token under load), and its drift: that lag minus the stream's first-token lag
(falling behind while streaming). Every stream's text, and the ``done`` event's stored reply,
must equal what the fake sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter

import httpx

from bench._common import Check, Context, Result, Rows, Stats, TimeBelow
from bench._fixtures import setup_users
from bench._probes import flat, own_cpu, peak_overlap, pg_cpu, pg_probe, postmaster_pid
from bench._stream_clients import CHUNK, Clients, StreamLog, reply_of
from bench.turns_ttft import (
    ChatkeepProcess,
    FakeUpstreamProcess,
    bulk_sessions,
    cpu_seconds,
    reset_peak_rss,
    status_kb,
)

NAME = "turns_streams"
TITLE = "relay CPU per token; N concurrent streams at 20 tokens/s"
CAPTION = (
    "Targets: chatkeep CPU per relayed token < 50 us (p50: 1,000 streams x 20 tok/s = 20,000 "
    "tok/s in one core); peak RSS above idle < 100 KB per stream; DB write transactions/s in "
    "the steady window <= the checkpoint tick's bound (1/0.25 s + the 1/5 s reaper), not the "
    "token rate; drift p99 (behind the stream's own first token) within one token interval "
    "(50 ms) of the direct streams'; no stream's text differs from the fake's. Rows in 'cpu' "
    "show CPU seconds (as ms) per token or turn. The client (this process), chatkeep and the "
    "fake share the same 2 busy cores, so a saturated run shows as lag and CPU %."
)

INTERVAL_S = 0.05  # 20 tokens/s
BATCH_INTERVAL_S = 0.02  # 50 tokens/s for (a)
SHORT_TOKENS = 10
TICK_S = 0.25  # chatkeep's checkpoint interval (Settings.checkpoint_interval_s)
REAPER_S = 5.0  # Settings.reaper_interval_s
LAG_SAMPLES = 40_000  # lag samples kept per row (a stride over tokens); stats use these

FAKE_TOKEN = "fake upstream CPU per token"
CK_TOKEN = "chatkeep CPU per relayed token"
FAKE_TURN = "fake upstream CPU per request (fixed)"
CK_TURN = "chatkeep CPU per turn (fixed)"
LAG_DIRECT = "lag behind schedule, direct"
LAG_CK = "lag behind schedule, via chatkeep"
DRIFT_DIRECT = "drift after 1st token, direct"
DRIFT_CK = "drift after 1st token, via chatkeep"
STREAMS = "stream request -> done, via chatkeep"


async def run(ctx: Context) -> list[Result]:
    n_streams = ctx.scale(1000, 50)
    url = ctx.new_database("streams")
    db, accounts = await setup_users(url, "bench")
    user = accounts["bench"]
    batch, rounds, long_tokens = ctx.scale(20, 10), ctx.scale(3, 2), ctx.scale(200, 60)
    try:
        sessions = iter(await bulk_sessions(db, user.user_pk, n_streams + batch * (2 * rounds + 2)))
    finally:
        await db.dispose()
    limits = httpx.Limits(max_connections=n_streams + 100, max_keepalive_connections=n_streams)
    timeout = httpx.Timeout(120, connect=60, pool=120)
    async with (
        FakeUpstreamProcess(ctx.workdir) as fake,
        ChatkeepProcess(url, fake, ctx.workdir, count_transactions=True) as server,
        httpx.AsyncClient(
            base_url=server.url, headers=user.headers, limits=limits, timeout=timeout
        ) as ck,
        httpx.AsyncClient(base_url=fake.base_url, limits=limits, timeout=timeout) as direct,
        httpx.AsyncClient(timeout=30) as probe,
        pg_probe(url) as pg,
    ):
        pg_pid = postmaster_pid(ctx)
        clients = Clients(ck, direct, sessions)
        await clients.batch(fake, batch, SHORT_TOKENS, BATCH_INTERVAL_S)  # warm-up
        clients.direct_body = (await fake.requests())[-1]
        per_token = await relay_cost(clients, fake, server, pg_pid, batch, rounds, long_tokens)
        crowd = await concurrent_streams(ctx, clients, fake, server, probe, pg, n_streams)
    return report(ctx, per_token, crowd)


# ---------------------------------------------------------------------------------------------
# Streams as a client sees them


@dataclass
class RelayCost:
    fake_token: list[float] = field(default_factory=list)  # seconds per token, one per round
    ck_token: list[float] = field(default_factory=list)
    fake_turn: list[float] = field(default_factory=list)
    ck_turn: list[float] = field(default_factory=list)
    pg_token: list[float] = field(default_factory=list)
    batch: int = 0
    long_tokens: int = 0


async def relay_cost(
    clients: Clients,
    fake: FakeUpstreamProcess,
    server: ChatkeepProcess,
    pg_pid: int | None,
    batch: int,
    rounds: int,
    long_tokens: int,
) -> RelayCost:
    cost = RelayCost(batch=batch, long_tokens=long_tokens)

    async def measured(tokens: int) -> tuple[float, float, float]:
        before = cpu_seconds(server.pid), cpu_seconds(fake.pid), pg_cpu(pg_pid)
        await clients.batch(fake, batch, tokens, BATCH_INTERVAL_S)
        await asyncio.sleep(2 * TICK_S)  # let the writer's last tick land in this batch
        after = cpu_seconds(server.pid), cpu_seconds(fake.pid), pg_cpu(pg_pid)
        return after[0] - before[0], after[1] - before[1], after[2] - before[2]

    extra = batch * (long_tokens - SHORT_TOKENS)
    for round_ in range(rounds):
        # Alternate which comes first, so that a noisy moment does not always hit the same one.
        if round_ % 2:
            long, short = await measured(long_tokens), await measured(SHORT_TOKENS)
        else:
            short, long = await measured(SHORT_TOKENS), await measured(long_tokens)
        ck_token, fake_token, pg_token = (
            (lo - sh) / extra for lo, sh in zip(long, short, strict=True)
        )
        cost.ck_token.append(ck_token)
        cost.fake_token.append(fake_token)
        cost.pg_token.append(pg_token)
        cost.ck_turn.append(short[0] / batch - SHORT_TOKENS * ck_token)
        cost.fake_turn.append(short[1] / batch - SHORT_TOKENS * fake_token)
    return cost


# ---------------------------------------------------------------------------------------------
# (b) N concurrent streams


@dataclass
class Sample:
    t: float
    ck_cpu: float
    fake_cpu: float
    own_cpu: float
    writes: float
    reads: float
    rss_kb: int
    xid: int | None  # PostgreSQL: the next transaction id (advanced by writes only)
    wal: int | None  # PostgreSQL: WAL bytes written so far


@dataclass
class Crowd:
    n: int
    tokens: int
    ramp_s: float
    logs: list[StreamLog]
    direct_logs: list[StreamLog]
    samples: list[Sample]
    idle_rss_kb: int
    peak_rss_kb: int
    peak_reset: bool
    started: float
    ended: float
    server_errors: str = ""


async def concurrent_streams(
    ctx: Context,
    clients: Clients,
    fake: FakeUpstreamProcess,
    server: ChatkeepProcess,
    probe: httpx.AsyncClient,
    pg: Callable[[], Awaitable[tuple[int, int] | None]],
    n: int,
) -> Crowd:
    tokens = ctx.scale(200, 60)  # 10 s / 3 s at 20 tokens/s
    ramp_s = 1.0 if ctx.quick else 4.0
    n_direct = max(5, n // 20)
    stride = max(1, (n * tokens) // LAG_SAMPLES)
    await fake.control(
        reset=True,
        reply=reply_of(tokens),
        chunk_chars=CHUNK,
        ttft_s=0.0,
        token_interval_s=INTERVAL_S,
    )
    await asyncio.sleep(1.0)  # let the last batch's tick and the fake settle
    peak_reset = reset_peak_rss(server.pid)
    idle_rss = status_kb(server.pid, "VmRSS")
    stop = asyncio.Event()
    samples: list[Sample] = []

    async def sample() -> None:
        while True:
            try:
                tx = await server.transactions(probe)
            except httpx.HTTPError:  # an overloaded server: the next sample will do
                tx = None
            if tx is not None:
                xid_wal = await pg()
                samples.append(
                    Sample(
                        t=perf_counter(),
                        ck_cpu=cpu_seconds(server.pid),
                        fake_cpu=cpu_seconds(fake.pid),
                        own_cpu=own_cpu(),
                        writes=tx.get("write", 0.0),
                        reads=tx.get("read", 0.0),
                        rss_kb=status_kb(server.pid, "VmRSS"),
                        xid=xid_wal[0] if xid_wal else None,
                        wal=xid_wal[1] if xid_wal else None,
                    )
                )
            if stop.is_set() and tx is not None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    sampler = asyncio.create_task(sample())
    await asyncio.sleep(0.3)
    started = perf_counter()
    tasks: list[asyncio.Task[StreamLog]] = []
    direct_tasks: list[asyncio.Task[StreamLog]] = []
    every = n // n_direct
    for i in range(n):
        await asyncio.sleep(max(0.0, started + ramp_s * i / n - perf_counter()))
        tasks.append(
            asyncio.create_task(clients.stream(chatkeep=True, interval=INTERVAL_S, stride=stride))
        )
        if i % every == every // 2 and len(direct_tasks) < n_direct:
            direct_tasks.append(
                asyncio.create_task(clients.stream(chatkeep=False, interval=INTERVAL_S))
            )
    logs = list(await asyncio.gather(*tasks))
    direct_logs = list(await asyncio.gather(*direct_tasks))
    ended = perf_counter()
    await asyncio.sleep(0.3)
    stop.set()
    await sampler
    if server.proc is not None and server.proc.poll() is not None:
        raise RuntimeError(f"chatkeep exited with {server.proc.returncode}: {server.log_tail()}")
    return Crowd(
        n=n,
        tokens=tokens,
        ramp_s=ramp_s,
        logs=logs,
        direct_logs=direct_logs,
        samples=samples,
        idle_rss_kb=idle_rss,
        peak_rss_kb=status_kb(server.pid, "VmHWM"),
        peak_reset=peak_reset,
        started=started,
        ended=ended,
        server_errors=server.log_problems(),
    )


def window_rate(
    samples: Sequence[Sample], t0: float, t1: float, value: Callable[[Sample], float | None]
) -> tuple[float | None, float]:
    """(rate per second of ``value`` between the first sample at/after t0 and the last at/before
    t1, the window's length); None when the window holds fewer than two samples."""
    inside = [s for s in samples if t0 <= s.t <= t1]
    if len(inside) < 2:
        return None, 0.0
    first, last = inside[0], inside[-1]
    a, b = value(first), value(last)
    if a is None or b is None:
        return None, last.t - first.t
    return (b - a) / (last.t - first.t), last.t - first.t


# ---------------------------------------------------------------------------------------------
# The report


def report(ctx: Context, cost: RelayCost, crowd: Crowd) -> list[Result]:
    rows = Rows(NAME, ctx.db)
    pg_note = ""
    if ctx.db == "postgres":
        pg = sorted(cost.pg_token)[len(cost.pg_token) // 2]
        pg_note = f"; PostgreSQL's own processes: {pg * 1e6:.1f} us/token more"
    rows.add(
        FAKE_TOKEN,
        cost.fake_token,
        layer="cpu",
        note=f"baseline; {cost.batch} turns x {cost.long_tokens} tokens at 50 tok/s, marginal",
    )
    rows.add(
        CK_TOKEN,
        cost.ck_token,
        layer="cpu",
        vs=FAKE_TOKEN,
        targets=[TimeBelow(0.05, stat="p50", source="20k tok/s in one core")],
        note="parse upstream SSE + relay + SSE out + checkpoints" + pg_note,
    )
    rows.add(FAKE_TURN, cost.fake_turn, layer="cpu", note="baseline")
    rows.add(
        CK_TURN,
        cost.ck_turn,
        layer="cpu",
        vs=FAKE_TURN,
        note="auth, the turn's transaction, the upstream request, finish",
    )
    crowd_rows(rows, crowd)
    return rows.results


def crowd_rows(rows: Rows, crowd: Crowd) -> None:
    n, logs, direct = crowd.n, crowd.logs, crowd.direct_logs
    expected = reply_of(crowd.tokens)
    failed = [log for log in logs if log.error is not None or log.done_at is None]
    why = Counter((log.error or "no done event")[:80] for log in failed)
    wrong = [log for log in logs if log.text != expected or log.stored != expected]
    firsts = [log.sent + log.first_lag for log in logs if log.first_lag is not None]
    dones = [log.done_at for log in logs if log.done_at is not None]
    # The steady window: every stream has had its first token and none has finished yet.
    t0 = max(firsts) if firsts else crowd.started
    t1 = min(dones) if dones else crowd.ended
    steady = t1 - t0 >= 1.0
    if not steady:  # overloaded: no such window; the middle half of the run instead
        quarter = (crowd.ended - crowd.started) / 4
        t0, t1 = crowd.started + quarter, crowd.ended - quarter
    s = crowd.samples

    def rate(attr: str, a: float = t0, b: float = t1) -> tuple[float | None, float]:
        return window_rate(s, a, b, lambda x: getattr(x, attr))

    ck_cpu, span = rate("ck_cpu")
    fake_cpu, _ = rate("fake_cpu")
    own, _ = rate("own_cpu")
    writes, _ = rate("writes")
    xids, _ = rate("xid")
    wal, _ = rate("wal")
    ramp_writes, _ = rate("writes", crowd.started, t0) if steady else (None, 0.0)
    drain_writes, drain_span = rate("writes", t1, crowd.ended + 0.3) if steady else (None, 0.0)
    all_writes, all_span = rate("writes", crowd.started, crowd.ended + 0.3)
    tokens = sum(log.tokens for log in logs)
    # What the writer may commit: a tick every 0.25 s, the reaper every 5 s, and one
    # transaction per turn started and per reply finished inside the window (SPEC 4, G2).
    inside = sum(1 for log in logs if t0 <= log.sent <= t1)
    inside += sum(1 for t in dones if t0 <= t <= t1)
    bound = 1 / TICK_S + 1 / REAPER_S + (inside / span if span else 0.0)

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v * 100:.0f}%"

    def per_s(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f}/s"

    ttft = Stats.of([log.first_lag for log in logs if log.first_lag is not None] or [0.0])
    lag_note = f"{len(direct)} streams straight from the fake, alongside"
    rows.add(LAG_DIRECT, flat(log.lags for log in direct), layer="http", note=lag_note)
    rows.add(
        LAG_CK,
        flat(log.lags for log in logs),
        layer="http",
        vs=LAG_DIRECT,
        note=(
            f"{n} streams ramped over {crowd.ramp_s:g} s; includes their TTFT under that load: "
            f"p50 {ttft.p50:.0f} ms, p99 {ttft.p99:.0f} ms"
        ),
    )
    rows.add(DRIFT_DIRECT, flat(log.drifts for log in direct), layer="http", note="baseline")
    drift = rows.add(DRIFT_CK, flat(log.drifts for log in logs), layer="http", vs=DRIFT_DIRECT)
    gap = drift.stats.p99 - rows[DRIFT_DIRECT].stats.p99
    limit_ms = INTERVAL_S * 1000
    drift.checks.append(
        Check(
            f"p99 - direct p99 < {limit_ms:g} ms (one token)", gap, limit_ms, "ms", gap < limit_ms
        )
    )
    durations = [log.done_at - log.sent for log in logs if log.done_at is not None]
    per_stream_kb = (crowd.peak_rss_kb - crowd.idle_rss_kb) / n
    open_peak = peak_overlap([(log.sent, log.done_at or crowd.ended) for log in logs])
    streaming_peak = peak_overlap(
        [
            (log.sent + log.first_lag, log.done_at or crowd.ended)
            for log in logs
            if log.first_lag is not None
        ]
    )
    write_ratio = (writes or 0.0) / bound
    window = (
        f"steady window {span:.1f} s"
        if steady
        else f"NO steady window (overloaded), middle half {span:.1f} s"
    )
    notes = [
        f"{window}: chatkeep CPU {pct(ck_cpu)}, fake {pct(fake_cpu)}, client {pct(own)} "
        "(of one core)",
        f"DB writes {per_s(writes)}"
        + (
            f" (PG: xids {per_s(xids)}, WAL {wal / 1e6:.1f} MB/s)"
            if xids is not None and wal
            else ""
        )
        + (
            f"; ramp {per_s(ramp_writes)}, drain {per_s(drain_writes)} over {drain_span:.1f} s"
            if steady
            else ""
        )
        + f"; whole run {per_s(all_writes)} over {all_span:.1f} s, "
        f"{tokens / max(1.0, (all_writes or 0.0) * all_span):.0f} tokens per write",
        f"at most {open_peak} requests open and {streaming_peak} streaming at once",
        f"RSS idle {crowd.idle_rss_kb / 1024:.0f} MB, peak {crowd.peak_rss_kb / 1024:.0f} MB"
        + ("" if crowd.peak_reset else " (VmHWM not reset: includes earlier peaks)"),
    ]
    if len(s) >= 2 and tokens:
        whole = (s[-1].ck_cpu - s[0].ck_cpu) / tokens
        notes.append(
            f"chatkeep CPU over the whole run {whole * 1e6:.0f} us per token, turns included"
        )
    if why:
        notes.append(
            "failures: " + ", ".join(f"{count} x {text}" for text, count in why.most_common(3))
        )
    if crowd.server_errors:
        notes.append(f"server log: {crowd.server_errors}")
    row = rows.add(STREAMS, durations or [0.0], layer="http", note="; ".join(notes))
    row.checks.extend(
        [
            Check(
                f"peak RSS above idle per stream {per_stream_kb:.1f} KB < 100 KB",
                per_stream_kb / 100,
                1.0,
                "x",
                per_stream_kb < 100,
            ),
            Check(
                f"DB writes {per_s(writes)} <= tick bound {bound:.1f}/s (+ starts, finishes)",
                write_ratio,
                1.0,
                "x",
                writes is not None and write_ratio <= 1.0,
            ),
            Check(
                f"streams with wrong text: {len(wrong)} of {n} (failed {len(failed)}) = 0",
                float(len(wrong) + len(failed)),
                0.0,
                "x",
                not wrong and not failed,
            ),
        ]
    )
