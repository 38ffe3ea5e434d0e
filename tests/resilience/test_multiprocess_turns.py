"""Turns across the processes of ``chatkeep serve --workers 3`` (G1, G4, G5, G6).

Each test chooses which worker a request reaches (``Target.connect``), so the process that owns
a generation and the process that answers a replay, a second send, a cancel or a delete differ
on purpose. Only the database can make them agree; process memory cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from resilience_kit import (
    Read,
    Store,
    Target,
    echo,
    eventually,
    new_accounts,
    read_stream,
    run_audit,
    server_env,
    start_server,
)

from support.checker import History, check_stream
from support.factories import Account, new_id
from support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.slow

WORKERS = 3
REPLAYS = 50
# What "at once" means for a stop that crosses processes: the owner notices at a checkpoint
# (every 250 ms, G2); a second or two leaves room for a loaded machine.
STOP_WITHIN_S = 2.0


@dataclass
class Cluster:
    target: Target
    fake: FakeUpstream
    store: Store
    env: dict[str, str]
    accounts: list[Account]
    workers: set[int]

    def account(self, n: int) -> Account:
        return self.accounts[n]

    async def connect(self, want: Callable[[int], bool]) -> tuple[httpx.AsyncClient, int]:
        return await self.target.connect(want)


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multiprocess")


@pytest.fixture(scope="module")
def accounts(shared_db_url: str) -> list[Account]:
    # One user per test, so no user creates more than two chats within 5 s (audit's spikes).
    return asyncio.run(new_accounts(shared_db_url, 10))


@pytest.fixture(scope="module")
def cluster_server(
    shared_db_url: str, shared_fake: FakeUpstream, server_dir: Path, accounts: list[Account]
) -> Iterator[tuple[Target, dict[str, str]]]:
    env = server_env(shared_db_url, server_dir / "data", shared_fake)
    server = start_server(env, WORKERS, server_dir / "server.log")
    try:
        assert server.proc is not None
        yield Target(server.url, accounts[0], pgid=server.proc.pid), env
    finally:
        server.stop()


@pytest.fixture
async def cluster(
    cluster_server: tuple[Target, dict[str, str]],
    shared_fake: FakeUpstream,
    shared_db_url: str,
    accounts: list[Account],
    store_factory: Callable[[str], Store],
) -> AsyncIterator[Cluster]:
    """The module's server, with a fake that is quiet and reset, and the pids of all three
    workers (found by connecting until each has answered)."""
    target, env = cluster_server
    shared_fake.reset()
    seen: set[int] = set()
    while len(seen) < WORKERS:
        client, pid = await target.connect(lambda pid: pid not in seen, tries=200)
        await client.aclose()
        seen.add(pid)
    yield Cluster(target, shared_fake, store_factory(shared_db_url), env, accounts, seen)
    # No test may leave a generation running into the next one's counters.
    await shared_fake.wait_for(lambda s: s.active == 0, timeout=30)


def turn_body(message_id: str, content: str) -> dict[str, Any]:
    return {"message": {"id": message_id, "content": content}, "session": {}}


def turn_url(session_id: str) -> str:
    return f"/api/sessions/{session_id}/turns"


@dataclass
class Live:
    """A turn streaming from the worker that took it (its owner), read in the background."""

    session_id: str
    message_id: str
    content: str
    owner: int
    client: httpx.AsyncClient
    read: Read
    task: asyncio.Task[Read]

    @property
    def sent(self) -> str:
        return echo(self.content)

    @property
    def reply_id(self) -> str:
        start = next(e for e in self.read.events if e.event == "start")
        return str(start.data["id"])

    def text(self) -> str:
        return "".join(text for _, text in self.read.deltas())

    async def finish(self, timeout: float = 30) -> Read:
        try:
            return await asyncio.wait_for(self.task, timeout)
        finally:
            await self.client.aclose()


async def start_live(cluster: Cluster, account: Account, *, words: int, deltas: int = 3) -> Live:
    """Start a turn on some worker (the owner) and wait until ``deltas`` deltas arrived."""
    session_id, message_id = new_id(), new_id()
    content = " ".join(f"w{n}" for n in range(words))
    client, owner = await cluster.connect(lambda pid: True)
    read = Read()
    task = asyncio.create_task(
        read_stream(
            client,
            "POST",
            turn_url(session_id),
            json_body=turn_body(message_id, content),
            into=read,
            account=account,
        )
    )
    live = Live(session_id, message_id, content, owner, client, read, task)

    def streaming() -> bool:
        if len(read.deltas()) >= deltas:
            return True
        assert not task.done(), f"the stream ended: {read.status} {read.problem} {read.events[-1:]}"
        return False

    await eventually(streaming, timeout=20, what=f"{deltas} deltas")
    return live


async def test_replays_of_one_turn_on_every_worker_make_one_generation(
    cluster: Cluster,
) -> None:
    """50 identical turns at once, spread over three processes: one upstream request, one
    user message and one reply stored, and every one of the 50 streams shows the whole reply
    (the owner's from its relay, the others' from the stored checkpoints)."""
    cluster.fake.set(token_interval_s=0.02, chunk_chars=4)
    account = cluster.account(0)
    session_id, message_id = new_id(), new_id()
    content = "once, whatever the number of clicks " * 3
    body = turn_body(message_id, content)
    pinned = await cluster.target.spread(REPLAYS, WORKERS, minimum=REPLAYS // 10)
    try:
        reads = await asyncio.gather(
            *(
                read_stream(
                    client,
                    "POST",
                    turn_url(session_id),
                    json_body=body,
                    account=account,
                    target=cluster.target,
                )
                for client, _ in pinned
            )
        )
    finally:
        await asyncio.gather(*(client.aclose() for client, _ in pinned))

    assert {r.served_by for r in reads} == cluster.workers
    assert cluster.fake.stats().chat_requests == 1
    history = History()
    sent = echo(content)
    shown = [check_stream(r.final.data["id"] if r.final else "?", r.deltas(), sent) for r in reads]
    for read in reads:
        assert read.status == 200, (read.status, read.problem)
        assert [e.event for e in read.events[:2]] == ["message", "start"]
        assert read.final is not None and read.final.event == "done"
        history.ack(message_id, content)
        history.text(read.final.data["id"], sent=sent, durable=sent, complete=True)
    assert len({r.events[0].data["seq"] for r in reads}) == 1
    assert all(verdict.ok for verdict in shown), [str(v) for v in shown if not v.ok]
    rows = [m for m in await cluster.store.messages() if m["session_id"] == session_id]
    verdict = history.check((m["id"], m["content"]) for m in rows)
    assert verdict.ok, verdict
    assert len(rows) == 2
    code, report = await asyncio.to_thread(run_audit, cluster.env)
    assert code == 0, report


async def test_second_send_during_a_stream_is_refused_by_every_worker(cluster: Cluster) -> None:
    """While a reply streams, a different message sent to any of the three processes gets
    ``409 generation_in_progress`` before any stream starts, and is not stored (G4). Once the
    reply is stopped, the chat takes the next message."""
    cluster.fake.set(token_interval_s=0.05, chunk_chars=2)  # ~20 s, stopped below
    account = cluster.account(1)
    live = await start_live(cluster, account, words=120)
    history = History()
    history.ack(live.message_id, live.content)
    for worker in sorted(cluster.workers):
        client, _ = await cluster.connect(lambda pid, worker=worker: pid == worker)
        async with contextlib.aclosing(client):
            message_id, content = new_id(), f"sent to {worker} while a reply streams"
            read = await read_stream(
                client,
                "POST",
                turn_url(live.session_id),
                json_body=turn_body(message_id, content),
                account=account,
                target=cluster.target,
            )
        assert read.served_by == worker
        assert read.status == 409 and read.problem is not None, (read.status, read.events[:1])
        assert read.problem["code"] == "generation_in_progress"
        history.refuse(message_id, content)
    assert not live.task.done(), "the first reply ended before every worker was asked"

    await cancel_on(cluster, live, account, lambda pid: pid == live.owner)
    first = await live.finish()
    assert first.final is not None and first.final.data["code"] == "cancelled", first.final
    history.text(live.reply_id, sent=live.sent, durable=live.text())
    async with cluster.target.client() as client:
        message_id, content = new_id(), "and now the next one"
        after = await read_stream(
            client,
            "POST",
            turn_url(live.session_id),
            json_body=turn_body(message_id, content),
            account=account,
        )
    assert after.status == 200 and after.final is not None and after.final.event == "done"
    history.ack(message_id, content)
    history.text(after.final.data["id"], sent=echo(content), durable=echo(content), complete=True)
    rows = [m for m in await cluster.store.messages() if m["session_id"] == live.session_id]
    verdict = history.check((m["id"], m["content"]) for m in rows)
    assert verdict.ok, verdict
    assert cluster.fake.stats().chat_requests == 2


async def cancel_on(
    cluster: Cluster, live: Live, account: Account, want: Callable[[int], bool]
) -> dict[str, Any]:
    """``POST .../cancel`` on a new connection to a worker that ``want`` accepts."""
    client, pid = await cluster.connect(want)
    async with contextlib.aclosing(client):
        response = await client.post(
            f"/api/sessions/{live.session_id}/messages/{live.reply_id}/cancel",
            headers=account.headers,
        )
        assert cluster.target.served_by(response) == pid
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def cancel_on_other_worker(cluster: Cluster, live: Live, account: Account) -> dict[str, Any]:
    return await cancel_on(cluster, live, account, lambda pid: pid != live.owner)


async def upstream_abandoned_within(cluster: Cluster, seconds: float) -> None:
    """The fake upstream saw its client (the owner's stream) go away in time."""
    await cluster.fake.wait_for(lambda s: s.abandoned >= 1, timeout=seconds)


async def test_cancel_sent_to_another_worker_stops_the_generation(cluster: Cluster) -> None:
    """A cancel answered by a process that does not own the generation: the owner stops the
    upstream request within a second or two, the stream ends ``cancelled``, and the reply keeps
    exactly the text the client was shown."""
    cluster.fake.set(token_interval_s=0.05, chunk_chars=3)
    account = cluster.account(2)
    live = await start_live(cluster, account, words=150)
    cancelled = await cancel_on_other_worker(cluster, live, account)
    assert cancelled["status"] == "cancelled"
    await upstream_abandoned_within(cluster, STOP_WITHIN_S)

    read = await live.finish()
    assert read.final is not None and read.final.event == "error", read.final
    assert read.final.data["code"] == "cancelled"
    rows = {m["id"]: m for m in await cluster.store.messages()}
    reply = rows[live.reply_id]
    assert reply["status"] == "cancelled"
    assert reply["content"] == live.text() == read.final.data["reply"]["content"]
    history = History()
    history.ack(live.message_id, live.content)
    # What the cancel answered was stored when it answered: it must survive.
    history.text(live.reply_id, sent=live.sent, durable=cancelled["content"])
    verdict = history.check(
        (m["id"], m["content"]) for m in rows.values() if m["session_id"] == live.session_id
    )
    verdict += check_stream(live.reply_id, read.deltas(), live.sent, complete=False)
    assert verdict.ok, verdict


async def test_cancel_answered_by_another_worker_is_the_final_text(cluster: Cluster) -> None:
    """Stop pressed on one process, a client attached on a third: the cancel's answer, the
    attached client's stream and the stored reply all hold the same final text (G6: the text
    a client is shown is the text that is kept). The model streams fast, so the owner always
    has text newer than its last checkpoint (at most 250 ms old, G2)."""
    cluster.fake.set(token_interval_s=0.005, chunk_chars=2)
    account = cluster.account(3)
    live = await start_live(cluster, account, words=1500, deltas=20)
    others = sorted(cluster.workers - {live.owner})
    cancelled = await cancel_on(cluster, live, account, lambda pid: pid == others[0])
    client, _ = await cluster.connect(lambda pid: pid == others[1])
    async with contextlib.aclosing(client):
        attached = await read_stream(
            client,
            "GET",
            f"/api/sessions/{live.session_id}/messages/{live.reply_id}/stream",
            account=account,
        )
    owners = await live.finish()
    stored = {m["id"]: m for m in await cluster.store.messages()}[live.reply_id]
    assert stored["status"] == "cancelled"
    assert attached.final is not None and attached.final.data["code"] == "cancelled"
    finals = {
        "stored": stored["content"],
        "owner's stream": "".join(t for _, t in owners.deltas()),
        "cancel's answer": cancelled["content"],
        "attached stream": "".join(t for _, t in attached.deltas()),
        "attached stream's final event": attached.final.data["reply"]["content"],
    }
    assert len(set(finals.values())) == 1, {k: len(v) for k, v in finals.items()}


async def test_delete_sent_to_another_worker_stops_the_generation(cluster: Cluster) -> None:
    """Delete wins across processes (G5): the owner stops the upstream request within a second
    or two, every stream (the owner's and a follower's on another process) ends with
    ``session_deleted``, no row of the session is left, and later writes get ``410``."""
    cluster.fake.set(token_interval_s=0.05, chunk_chars=3)
    account = cluster.account(4)
    live = await start_live(cluster, account, words=150)
    others = sorted(cluster.workers - {live.owner})
    client, _ = await cluster.connect(lambda pid: pid == others[0])
    follower = Read()
    url = f"/api/sessions/{live.session_id}/messages/{live.reply_id}/stream"
    following = asyncio.create_task(read_stream(client, "GET", url, into=follower, account=account))
    history = History()
    history.ack(live.message_id, live.content)
    history.text(live.reply_id, sent=live.sent)
    try:
        await eventually(lambda: follower.deltas(), what="the follower's first delta")
        deleter, pid = await cluster.connect(lambda pid: pid == others[1])
        async with contextlib.aclosing(deleter):
            response = await deleter.delete(
                f"/api/sessions/{live.session_id}", headers=account.headers
            )
        assert response.status_code == 204, response.text
        history.delete(live.message_id)
        history.delete(live.reply_id)
        await upstream_abandoned_within(cluster, STOP_WITHIN_S)
        await asyncio.wait_for(following, 20)
        read = await live.finish()
    finally:
        await client.aclose()

    for stream in (read, follower):
        assert stream.final is not None and stream.final.event == "error", stream.final
        assert stream.final.data["code"] == "session_deleted"
    rows = await cluster.store.messages()
    verdict = history.check((m["id"], m["content"]) for m in rows if m["id"] in history.items)
    assert verdict.ok, verdict
    assert not [m for m in rows if m["session_id"] == live.session_id]
    session = await cluster.store.session(live.session_id)
    assert session is not None and session["deleted_at"] is not None
    async with cluster.target.client() as api:
        late = await api.put(
            f"/api/sessions/{live.session_id}/messages/{new_id()}",
            json={"role": "user", "content": "too late"},
            headers=account.headers,
        )
    assert late.status_code == 410, late.text
    code, report = await asyncio.to_thread(run_audit, cluster.env)
    assert code == 0, report


async def silent_generation(cluster: Cluster, account: Account) -> Live:
    """A turn whose upstream sent its headers and then nothing for a while."""
    cluster.fake.set(ttft_s=4, token_interval_s=0.01, chunk_chars=4)
    live = await start_live(cluster, account, words=5, deltas=0)
    await eventually(lambda: live.read.events[1:], what="the start event")
    await cluster.fake.wait_for(lambda s: s.active >= 1)
    return live


async def test_cancel_sent_to_another_worker_stops_a_silent_generation(
    cluster: Cluster,
) -> None:
    """Before the first token (a model still reading a long prompt), a cancel on another
    process stops the upstream request too: the owner asks at every tick whether a reply with
    no new text is still its own (CheckpointWriter)."""
    account = cluster.account(5)
    live = await silent_generation(cluster, account)
    try:
        await cancel_on_other_worker(cluster, live, account)
        await upstream_abandoned_within(cluster, STOP_WITHIN_S)
    finally:
        await live.finish()
    rows = {m["id"]: m for m in await cluster.store.messages()}
    assert rows[live.reply_id]["status"] == "cancelled"


async def test_delete_sent_to_another_worker_stops_a_silent_generation(
    cluster: Cluster,
) -> None:
    """Before the first token, a delete on another process stops the upstream request too."""
    account = cluster.account(6)
    live = await silent_generation(cluster, account)
    try:
        client, _ = await cluster.connect(lambda pid: pid != live.owner)
        async with contextlib.aclosing(client):
            response = await client.delete(
                f"/api/sessions/{live.session_id}", headers=account.headers
            )
        assert response.status_code == 204
        await upstream_abandoned_within(cluster, STOP_WITHIN_S)
    finally:
        read = await live.finish()
    assert read.final is not None and read.final.data["code"] == "session_deleted"
