"""Scale-out (issue 12, docs/deploy.md): the documented deployment — PostgreSQL, optional
redis-server, 3 ``chatkeep serve`` replicas, nginx in front (``support.cluster``) — with nginx
sending to 1, 2 or 3 of the replicas, with and without Redis:

- appends/s: concurrent clients, each ``PUT``-ting messages into its own chat;
- turns/s: concurrent clients, each running short turns (10 tokens, no delay) to the end;
- streams at 20 tokens/s: concurrent turns of 60 tokens at 50 ms per token, and how many of them
  kept the pace (ended within 20 % of the upstream's own duration);
- relay lag: a reply generated on replica A read on A and on replica B at once; per delta, when
  B had the text minus when A had it (Redis: the live relay; without: B's stored checkpoints).

Everything shares this machine's 2 cores (the clients, the fake upstream in its own process,
nginx, the replicas, PostgreSQL, Redis), so more replicas cannot add CPU here: the figures show
what a replica costs and where the time goes; docs/deploy.md projects them to more machines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import httpx

from bench._common import Context, Result, Rows, TimeBelow
from bench._stream_clients import reply_of
from bench.turns_ttft import FakeUpstreamProcess, SSEParser
from chatkeep.turns.manager import derived_reply_id
from support.cluster import Cluster
from support.factories import Account, make_accounts, new_id

TITLE = "N replicas behind nginx: appends/s, turns/s, streams at 20 tok/s, relay lag A -> B"
CAPTION = (
    "Throughput is in each row's note (total and per replica; all replicas share 2 cores). "
    "Latency columns: per request (appends, turns), per-delta gap (streams), B behind A "
    "(lag). Target: relay lag p99 < 100 ms with Redis (issue 12)."
)
DATABASES = ("postgres",)
ORDER = 90
FAKE_MODEL = "fake-model"


def replica_env(fake_base_url: str) -> dict[str, str]:
    return {
        "CHATKEEP_OPENAI_BASE_URL": fake_base_url,
        "CHATKEEP_OPENAI_API_KEY": "bench",
        "CHATKEEP_DEMO_MODEL": "false",
        "CHATKEEP_DEFAULT_MODEL": FAKE_MODEL,
        "CHATKEEP_OLLAMA_AUTODETECT": "false",
        "CHATKEEP_RATE_LIMIT_PER_MINUTE": "0",
        "CHATKEEP_DB_POOL_SIZE": "20",
    }


def http(base: str, account: Account, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base, headers=account.headers, timeout=120, limits=limits)


async def timed_stream(
    client: httpx.AsyncClient, method: str, url: str, body: Any = None
) -> tuple[list[tuple[int, float]], str, str]:
    """(offset, arrival) per delta, the closing event's name, and the streamed text."""
    parser = SSEParser()
    arrivals: list[tuple[int, float]] = []
    parts: list[str] = []
    final = "none"
    async with client.stream(method, url, json=body) as response:
        async for chunk in response.aiter_raw():
            now = perf_counter()
            for name, event_id, data in parser.feed(chunk):
                if name == b"delta":
                    arrivals.append((int(event_id.rpartition(b":")[2]), now))
                    parts.append(json.loads(data)["text"])
                elif name in (b"done", b"error"):
                    final = name.decode()
    return arrivals, final, "".join(parts)


def turn_request(session_id: str, content: str) -> tuple[str, dict[str, Any]]:
    body = {"message": {"id": new_id(), "content": content}, "session": {}}
    return f"/api/sessions/{session_id}/turns", body


async def for_a_while(
    seconds: float, workers: int, once: Callable[[int], Awaitable[None]]
) -> tuple[list[float], float]:
    """Run ``once(worker)`` in ``workers`` loops for ``seconds``: latencies and the rate/s."""
    latencies: list[float] = []
    began = perf_counter()
    deadline = began + seconds

    async def loop(worker: int) -> None:
        while perf_counter() < deadline:
            started = perf_counter()
            await once(worker)
            latencies.append(perf_counter() - started)

    await asyncio.gather(*(loop(w) for w in range(workers)))
    return latencies, len(latencies) / (perf_counter() - began)


async def appends(cluster: Cluster, account: Account, seconds: float) -> tuple[list[float], float]:
    workers = 32
    sessions = [new_id() for _ in range(workers)]
    async with http(cluster.url, account, workers) as client:
        for sid in sessions:
            (await client.put(f"/api/sessions/{sid}", json={})).raise_for_status()

        async def once(worker: int) -> None:
            body = {"role": "user", "content": "an appended message of moderate length"}
            answer = await client.put(
                f"/api/sessions/{sessions[worker]}/messages/{new_id()}", json=body
            )
            answer.raise_for_status()

        return await for_a_while(seconds, workers, once)


async def turns(
    cluster: Cluster, accounts: list[Account], seconds: float
) -> tuple[list[float], float]:
    workers = 16
    clients = [http(cluster.url, accounts[w % len(accounts)], 2) for w in range(workers)]
    sessions = [new_id() for _ in range(workers)]
    try:

        async def once(worker: int) -> None:
            url, body = turn_request(sessions[worker], "a short turn")
            _, final, _ = await timed_stream(clients[worker], "POST", url, body)
            if final != "done":
                raise RuntimeError(f"turn ended with {final}")

        return await for_a_while(seconds, workers, once)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def held_streams(
    cluster: Cluster, accounts: list[Account], count: int, tokens: int
) -> tuple[list[float], int]:
    """Per-delta gaps of ``count`` concurrent 20 tok/s streams, and how many kept the pace."""
    want = reply_of(tokens)
    ideal = tokens * 0.05
    gaps: list[float] = []
    held = 0
    async with http(cluster.url, accounts[0], count) as first:
        clients = [first] + [http(cluster.url, a, count) for a in accounts[1:]]
        try:

            async def one(n: int) -> None:
                nonlocal held
                url, body = turn_request(new_id(), "a long turn")
                client = clients[n % len(clients)]
                arrivals, final, text = await timed_stream(client, "POST", url, body)
                if final != "done" or text != want:
                    raise RuntimeError(f"stream ended with {final}, text differs: {text != want}")
                times = [t for _, t in arrivals]
                gaps.extend(b - a for a, b in zip(times, times[1:], strict=False))
                if times[-1] - times[0] <= ideal * 1.2:
                    held += 1

            await asyncio.gather(*(one(n) for n in range(count)))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients[1:]))
    return gaps, held


async def relay_lag(cluster: Cluster, account: Account, count: int, tokens: int) -> list[float]:
    """B's lag behind A, per delta B received live (its first, the stored catch-up, excluded)."""
    lags: list[float] = []
    async with (
        http(cluster.replicas[0].url, account, count) as a,
        http(cluster.replicas[1].url, account, count) as b,
    ):

        async def one() -> None:
            sid = new_id()
            url, body = turn_request(sid, "watched from another replica")
            rid = derived_reply_id(body["message"]["id"])
            owner = asyncio.create_task(timed_stream(a, "POST", url, body))
            while True:  # 404 until the owner has stored the reply
                watch = await timed_stream(b, "GET", f"/api/sessions/{sid}/messages/{rid}/stream")
                if watch[1] != "none":
                    break
                await asyncio.sleep(0.005)
            at_a, _, _ = await owner
            offsets = [o for o, _ in at_a]
            for offset, at_b in watch[0][1:]:
                index = next(i for i, o in enumerate(offsets) if o >= offset)
                lags.append(at_b - at_a[index][1])

        await asyncio.gather(*(one() for _ in range(count)))
    return lags


async def run(ctx: Context) -> list[Result]:
    rows = Rows("cluster", ctx.db)
    seconds = ctx.scale(8, 1.5)
    streams = ctx.scale(150, 20)
    stream_tokens = ctx.scale(60, 30)
    lag_streams = ctx.scale(20, 4)
    async with FakeUpstreamProcess(ctx.workdir) as fake:
        for redis in (True, False):
            cluster = Cluster(
                ctx.workdir / f"cluster-{'redis' if redis else 'db'}",
                replicas=3,
                redis=redis,
                env=replica_env(fake.base_url),
                postgres=ctx.cluster,
            )
            await asyncio.to_thread(cluster.start)
            try:
                made = await make_accounts(cluster.database_url, *(f"b{n}" for n in range(4)))
                accounts = list(made.values())
                relay = "redis" if redis else "no redis"
                for front in (1, 2, 3):
                    await asyncio.to_thread(cluster.start_nginx, front)
                    label = f"{front} replica{'s' if front > 1 else ''}, {relay}"
                    lat, rate = await appends(cluster, accounts[0], seconds)
                    rows.add(
                        f"appends, {label}",
                        lat,
                        layer="http",
                        note=f"{rate:.0f}/s, {rate / front:.0f}/s per replica",
                    )
                    await fake.control(reply=reply_of(10), chunk_chars=4, token_interval_s=0.0)
                    lat, rate = await turns(cluster, accounts, seconds)
                    rows.add(
                        f"turns, {label}",
                        lat,
                        layer="http",
                        note=f"{rate:.1f}/s, {rate / front:.1f}/s per replica",
                    )
                    await fake.control(
                        reply=reply_of(stream_tokens), chunk_chars=4, token_interval_s=0.05
                    )
                    gaps, held = await held_streams(cluster, accounts, streams, stream_tokens)
                    rows.add(
                        f"{streams} streams at 20 tok/s, {label}",
                        gaps,
                        layer="http",
                        note=f"{held}/{streams} kept pace (gap between deltas)",
                    )
                await fake.control(reply=reply_of(40), chunk_chars=4, token_interval_s=0.05)
                lags = await relay_lag(cluster, accounts[1], lag_streams, 40)
                rows.add(
                    f"relay lag A -> B, {relay}",
                    lags,
                    layer="http",
                    targets=[TimeBelow(100, "p99", "issue 12")] if redis else [],
                    note=f"{lag_streams} replies at 20 tok/s",
                )
            finally:
                await asyncio.to_thread(cluster.stop)
    return rows.results
