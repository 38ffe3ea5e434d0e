"""The documented deployment under test (issue 12, docs/deploy.md): 3 replicas behind nginx on
PostgreSQL, Redis as the live relay. Every guarantee must hold whichever replica a request
reaches, and when a replica, Redis or PostgreSQL dies under it (G1-G8, and G9's retries
across a PostgreSQL restart)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
from cluster_kit import LEASE_TTL_S, RATE_LIMIT_PER_MINUTE, REAPER_INTERVAL_S
from resilience_kit import Read, Store, echo, eventually, read_stream

from support.cluster import Cluster
from support.factories import Account, new_id
from support.fake_upstream import FakeUpstream

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# docs/deploy.md: a dead replica's replies are `interrupted` within LEASE_TTL_S +
# REAPER_INTERVAL_S of its last checkpoint; the rest is room for a loaded 2-core machine.
REAP_BOUND_S = LEASE_TTL_S + REAPER_INTERVAL_S + 6


def client(base: str, account: Account, connections: int = 10) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base, headers=account.headers, timeout=60, limits=limits)


def turn(session_id: str, message_id: str, content: str) -> tuple[str, dict[str, Any]]:
    body = {"message": {"id": message_id, "content": content}, "session": {}}
    return f"/api/sessions/{session_id}/turns", body


def stream_url(session_id: str, reply_id: str) -> str:
    return f"/api/sessions/{session_id}/messages/{reply_id}/stream"


def text_of(read: Read) -> str:
    """The streamed text, checking that every delta starts where the previous ended (G6)."""
    at, parts = None, []
    for offset, text in read.deltas():
        start = offset - len(text)
        assert at is None or start == at, f"delta at {start} after {at}: gap or repeat"
        at, parts = offset, [*parts, text]
    return "".join(parts)


def replayed_turns(metrics: str) -> float:
    found = re.search(r'chatkeep_writes_total\{outcome="replayed",resource="turn"\} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


async def start_live(
    base: str, account: Account, content: str, into: Read
) -> tuple[str, str, asyncio.Task[Read]]:
    """A turn read in the background from ``base``; returns (session id, reply id, task)."""
    sid = new_id()
    url, body = turn(sid, new_id(), content)
    http = client(base, account, 2)

    async def run() -> Read:
        try:
            return await read_stream(http, "POST", url, json_body=body, into=into)
        finally:
            await http.aclose()

    task = asyncio.create_task(run())
    start = await eventually(
        lambda: next((e for e in into.events if e.event == "start"), None), what="start"
    )
    return sid, str(start.data["id"]), task


async def test_identical_turns_through_nginx_make_one_generation(
    cluster: Cluster, fake_upstream: FakeUpstream, accounts: list[Account]
) -> None:
    """G1: 200 concurrent identical turns, round-robin over 3 replicas: one generation, every
    stream ends with the same stored reply."""
    fake_upstream.set(chunk_chars=3, token_interval_s=0.01)
    before = [replayed_turns(httpx.get(f"{r.url}/metrics").text) for r in cluster.replicas]
    sid, mid = new_id(), new_id()
    url, body = turn(sid, mid, "one generation for all")
    async with client(cluster.url, accounts[0], connections=200) as http:
        reads = await asyncio.gather(
            *(read_stream(http, "POST", url, json_body=body) for _ in range(200))
        )
    assert fake_upstream.stats().chat_requests == 1
    want = echo("one generation for all")
    for read in reads:
        assert read.status == 200 and read.final is not None, read.problem or read.broken
        assert read.final.event == "done", read.final.data
        assert read.final.data["content"] == want
        assert text_of(read) == want
    after = [replayed_turns(httpx.get(f"{r.url}/metrics").text) for r in cluster.replicas]
    assert all(a > b for a, b in zip(after, before, strict=True)), "a replica took no replay"


async def test_second_send_is_409_on_every_replica(
    cluster: Cluster, fake_upstream: FakeUpstream, accounts: list[Account]
) -> None:
    """G4 across replicas: the database refuses a second send, whichever replica it reaches."""
    fake_upstream.set(chunk_chars=2, token_interval_s=0.05)
    read = Read()
    sid, _, task = await start_live(cluster.replicas[0].url, accounts[0], "x" * 40, read)
    for base in [r.url for r in cluster.replicas[1:]] + [cluster.url]:
        async with client(base, accounts[0]) as http:
            url, body = turn(sid, new_id(), "a second send")
            answer = await http.post(url, json=body)
        assert answer.status_code == 409 and answer.json()["code"] == "generation_in_progress"
    assert (await task).final is not None


async def test_context_and_isolation_hold_whichever_replica_answers(
    cluster: Cluster, fake_upstream: FakeUpstream, accounts: list[Account]
) -> None:
    """G3: a turn sent through B is prompted with the stored path of a turn A generated.
    G7: another user's chat answers 404 on every replica, like one that does not exist."""
    sid = new_id()
    async with client(cluster.replicas[0].url, accounts[0]) as a:
        url, body = turn(sid, new_id(), "first, on A")
        assert (await read_stream(a, "POST", url, json_body=body)).final is not None
    async with client(cluster.replicas[1].url, accounts[0]) as b:
        url, body = turn(sid, new_id(), "second, on B")
        second = await read_stream(b, "POST", url, json_body=body)
    assert second.final is not None and second.final.event == "done"
    prompt = fake_upstream.requests[-1]["messages"]
    said = [(m["role"], m["content"]) for m in prompt if m["role"] != "system"]
    assert said == [
        ("user", "first, on A"),
        ("assistant", echo("first, on A")),
        ("user", "second, on B"),
    ]
    for base in [r.url for r in cluster.replicas] + [cluster.url]:
        async with client(base, accounts[1]) as other:
            assert (await other.get(f"/api/sessions/{sid}")).status_code == 404
            assert (await other.get(f"/api/sessions/{new_id()}")).status_code == 404


async def test_reply_on_a_watched_live_through_b(
    cluster: Cluster, fake_upstream: FakeUpstream, accounts: list[Account]
) -> None:
    """G6 across replicas, live through Redis: every delta, in order, exactly once, and close
    behind the owner (the exact lag figures are in bench/cluster.py); a resume with
    Last-Event-ID on a third replica gets exactly the rest."""
    content = "watch me " * 40
    fake_upstream.set(chunk_chars=4, token_interval_s=0.02)
    on_a, on_b = Read(), Read()
    arrived_a: dict[int, float] = {}
    arrived_b: list[tuple[int, float]] = []
    sid, rid, task_a = await start_live(cluster.replicas[0].url, accounts[0], content, on_a)
    async with (
        client(cluster.replicas[1].url, accounts[0]) as http,
        client(cluster.replicas[2].url, accounts[0]) as third,
    ):
        task_b = asyncio.create_task(read_stream(http, "GET", stream_url(sid, rid), into=on_b))
        # A third replica resumes mid-stream from an id A sent (G6: exactly the rest).
        await eventually(lambda: len(on_a.deltas()) > 5, what="a few deltas on A")
        resumed_at = on_a.deltas()[2][0]
        task_c = asyncio.create_task(
            read_stream(third, "GET", stream_url(sid, rid), last_event_id=f"{rid}:{resumed_at}")
        )
        while not (task_a.done() and task_b.done()):
            now = time.perf_counter()
            for offset, _ in on_a.deltas():
                arrived_a.setdefault(offset, now)
            seen = {o for o, _ in arrived_b}
            arrived_b += [(o, now) for o, _ in on_b.deltas() if o not in seen]
            await asyncio.sleep(0.002)
        await task_b
        on_c = await task_c
    want = echo(content)
    assert on_c.final is not None and on_c.final.event == "done"
    assert not [e for e in on_c.events if e.event in ("message", "start")]
    assert on_c.deltas()[0][0] - len(on_c.deltas()[0][1]) == resumed_at
    assert "".join(t for _, t in on_c.deltas()) == want[resumed_at:]
    assert on_b.final is not None and on_b.final.event == "done", on_b.broken
    assert text_of(on_b) == want and on_b.final.data["content"] == want
    # Stored checkpoints alone would give B a delta every 250 ms: a handful, not dozens.
    assert len(on_b.deltas()) > 30, f"only {len(on_b.deltas())} deltas: not live"
    a_offsets = sorted(arrived_a)
    lags = []
    for offset, at_b in arrived_b[1:]:  # the first is the stored catch-up
        at_a = arrived_a[next(o for o in a_offsets if o >= offset)]
        lags.append(at_b - at_a)
    lags.sort()
    p99 = lags[int(len(lags) * 0.99) - 1]
    assert p99 < 0.5, f"B lags A by {p99 * 1000:.0f} ms at p99"


async def test_cancel_and_delete_through_another_replica(
    cluster: Cluster, fake_upstream: FakeUpstream, accounts: list[Account]
) -> None:
    """G5 across replicas: cancel through B keeps the owner's last text, delete through B ends
    the owner's stream with `session_deleted` at once (Redis pub/sub, not the next tick)."""
    fake_upstream.set(chunk_chars=2, token_interval_s=0.05)
    read = Read()
    sid, rid, task = await start_live(cluster.replicas[0].url, accounts[0], "y" * 200, read)
    await eventually(lambda: len(text_of(read)) > 10, what="some text")
    async with client(cluster.replicas[1].url, accounts[0]) as http:
        cancelled = (await http.post(f"/api/sessions/{sid}/messages/{rid}/cancel")).json()
    done = await task
    assert cancelled["status"] == "cancelled"
    assert done.final is not None and done.final.data["code"] == "cancelled"
    assert done.final.data["reply"]["content"] == cancelled["content"] == text_of(done)

    read = Read()
    sid, _, task = await start_live(cluster.replicas[0].url, accounts[1], "z" * 200, read)
    await eventually(lambda: len(text_of(read)) > 10, what="some text")
    async with client(cluster.replicas[2].url, accounts[1]) as http:
        asked = time.perf_counter()
        assert (await http.delete(f"/api/sessions/{sid}")).status_code == 204
    done = await task
    assert done.final is not None and done.final.data["code"] == "session_deleted"
    assert time.perf_counter() - asked < 2.0


async def test_kill9_of_the_owner_interrupts_its_reply_within_the_lease(
    cluster: Cluster, fake_upstream: FakeUpstream, accounts: list[Account]
) -> None:
    """G2 across replicas: the owner dies mid-stream; another replica's reaper marks the reply
    `interrupted` with its last checkpoint, readers elsewhere get `error` `interrupted`, and
    the chat takes a new turn."""
    fake_upstream.set(chunk_chars=2, token_interval_s=0.05)
    store = Store(cluster.database_url)
    try:
        on_a = Read()
        sid, rid, _task_a = await start_live(cluster.replicas[0].url, accounts[0], "k" * 400, on_a)
        on_b, on_nginx = Read(), Read()
        async with (
            client(cluster.replicas[1].url, accounts[0]) as b,
            client(cluster.url, accounts[0]) as front,
        ):
            readers = [
                asyncio.create_task(read_stream(b, "GET", stream_url(sid, rid), into=on_b)),
                asyncio.create_task(read_stream(front, "GET", stream_url(sid, rid), into=on_nginx)),
            ]

            async def checkpointed() -> bool:
                rows = [m for m in await store.messages() if m["id"] == rid]
                return bool(rows and len(rows[0]["content"]) > 20)

            await eventually(checkpointed, what="a stored checkpoint")
            cluster.kill_replica(0)
            killed = time.perf_counter()
            finals = await asyncio.wait_for(asyncio.gather(*readers), REAP_BOUND_S + 10)
        assert time.perf_counter() - killed < REAP_BOUND_S
        row = next(m for m in await store.messages() if m["id"] == rid)
        assert row["status"] == "interrupted" and len(row["content"]) > 20
        for read in finals:
            if read.final is None:  # nginx's connection went to the dead replica
                assert read.broken is not None
                continue
            assert read.final.event == "error" and read.final.data["code"] == "interrupted"
            assert read.final.data["reply"]["content"] == row["content"]
            # What the reader saw live may run past the last checkpoint, never disagree with it.
            assert text_of(read).startswith(row["content"][: len(text_of(read))])
        assert any(r.final is not None for r in finals)

        fake_upstream.set(chunk_chars=4, token_interval_s=0.0)
        async with client(cluster.url, accounts[0]) as http:
            url, body = turn(sid, new_id(), "after the crash")
            again = await read_stream(http, "POST", url, json_body=body)
        assert again.final is not None and again.final.event == "done", again.problem
    finally:
        await store.dispose()
        cluster.restart_replica(0)


async def test_losing_redis_mid_stream_loses_no_text(
    cluster: Cluster, fake_upstream: FakeUpstream, accounts: list[Account]
) -> None:
    """Redis is only a relay: killed mid-stream, every reader on another replica still ends
    with the upstream's exact text, from the stored checkpoints."""
    fake_upstream.set(chunk_chars=3, token_interval_s=0.02)
    contents = [f"redis goes away {n} " * 12 for n in range(6)]
    owners = [Read() for _ in contents]
    started = [
        await start_live(cluster.replicas[n % 3].url, accounts[n % 2], c, owners[n])
        for n, c in enumerate(contents)
    ]
    watchers = [Read() for _ in contents]
    clients = [client(cluster.replicas[(n + 1) % 3].url, accounts[n % 2]) for n in range(6)]
    try:
        tasks = [
            asyncio.create_task(read_stream(c, "GET", stream_url(sid, rid), into=w))
            for c, (sid, rid, _), w in zip(clients, started, watchers, strict=True)
        ]
        await eventually(lambda: all(len(text_of(w)) > 10 for w in watchers), what="live text")
        cluster.kill_redis()
        await asyncio.wait_for(asyncio.gather(*tasks, *(t for _, _, t in started)), 60)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
        cluster.start_redis()
    for content, owner, watcher in zip(contents, owners, watchers, strict=True):
        for read in (owner, watcher):
            assert read.final is not None and read.final.event == "done", read.broken
            assert text_of(read) == echo(content) == read.final.data["content"]


async def test_postgres_restart_mid_run_keeps_every_acknowledged_write(
    cluster: Cluster, accounts: list[Account]
) -> None:
    """G1/G9 across a database crash: clients retry with the same ids until acknowledged; all
    acknowledged messages are stored once, and the replicas recover on their own."""
    assert cluster.postgres is not None
    acked: list[tuple[str, str]] = []
    stop = asyncio.Event()

    async def writer(account: Account) -> None:
        sid = new_id()
        async with client(cluster.url, account) as http:
            while (await http.put(f"/api/sessions/{sid}", json={})).status_code >= 500:
                await asyncio.sleep(0.1)
            while not stop.is_set():
                mid = new_id()
                body = {"role": "user", "content": f"write {mid}"}
                while True:  # the same id until acknowledged (G1)
                    try:
                        answer = await http.put(f"/api/sessions/{sid}/messages/{mid}", json=body)
                        if answer.status_code in (200, 201):
                            acked.append((sid, mid))
                            break
                        assert answer.status_code >= 500, answer.text
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)

    writers = [asyncio.create_task(writer(accounts[n % 2])) for n in range(4)]
    await eventually(lambda: len(acked) > 20, what="writes before the restart")
    await asyncio.to_thread(cluster.postgres.restart, down_s=1.0)
    count = len(acked)
    await eventually(lambda: len(acked) > count + 20, timeout=30, what="writes after it")
    stop.set()
    await asyncio.gather(*writers)
    store = Store(cluster.database_url)
    try:
        stored = [(m["session_id"], m["id"]) for m in await store.messages()]
    finally:
        await store.dispose()
    assert len(stored) == len(set(stored)), "a duplicate row"
    assert set(acked) <= set(stored), "an acknowledged write is missing"
    for replica in cluster.replicas:
        assert httpx.get(f"{replica.url}/readyz").status_code == 200


async def test_rate_limit_holds_across_the_replicas(
    cluster: Cluster, accounts: list[Account]
) -> None:
    """G8: a user's limit is for the whole deployment (Redis), not N times per replica."""
    async with client(cluster.url, accounts[0], connections=20) as http:
        answers = await asyncio.gather(
            *(http.get("/api/sessions") for _ in range(RATE_LIMIT_PER_MINUTE + 30))
        )
    codes = [a.status_code for a in answers]
    assert codes.count(200) == RATE_LIMIT_PER_MINUTE and codes.count(429) == 30
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["code"] == "rate_limited" and int(refused.headers["Retry-After"]) >= 1
