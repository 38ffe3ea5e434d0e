"""G1 Exactly once: concurrent requests with the same id leave exactly one row, on every database
and with several server processes (SPEC 2, G1; the source report's double-click cases).

A real ``chatkeep serve --workers 3`` answers bursts of identical requests. The database is then
read directly, not through the API, so that a duplicate row hidden by the API would still show.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support.factories import Account, make_accounts_sync, new_id
from support.server import ServerProcess

WORKERS = 3

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    """``chatkeep serve --workers 3`` on one database, and alice's account on it."""

    server: ServerProcess
    alice: Account
    db_url: str
    metrics_dir: Path

    async def burst(self, requests: list[tuple[str, Any]]) -> list[httpx.Response]:
        """PUT every ``(url, body)`` at once, each on its own connection; fail on any 5xx.

        Each request sends its headers and then holds its body until every request has sent its
        headers: all are in flight in the server before any can finish, and no keep-alive
        connection sits idle. The connections are opened 2 ms apart because uvicorn's workers
        share one listening socket and the first to wake accepts every pending connection: a
        burst of new connections would otherwise all land in one process.
        """
        count = len(requests)
        everyone_sent_headers = asyncio.Barrier(count)
        limits = httpx.Limits(max_connections=count)

        async def put(client: httpx.AsyncClient, n: int, url: str, body: Any) -> httpx.Response:
            data = json.dumps(body).encode()

            async def held_body() -> AsyncIterator[bytes]:
                async with asyncio.timeout(60):
                    await everyone_sent_headers.wait()
                yield data

            await asyncio.sleep(n * 0.002)
            headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
            return await client.put(url, content=held_body(), headers=headers)

        async with httpx.AsyncClient(
            base_url=self.server.url, headers=self.alice.headers, timeout=90, limits=limits
        ) as client:
            responses = await asyncio.gather(
                *(put(client, n, url, body) for n, (url, body) in enumerate(requests))
            )
        errors = [(r.status_code, r.text[:300]) for r in responses if r.status_code >= 500]
        assert not errors, f"{len(errors)} server errors, e.g. {errors[:3]}"
        return list(responses)

    async def put(self, url: str, body: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.server.url, headers=self.alice.headers) as api:
            return await api.put(url, json=body)

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Read the database directly, past the API that could hide a duplicate row."""
        engine = create_async_engine(self.db_url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in await conn.execute(text(sql), params)]
        finally:
            await engine.dispose()

    async def scalar(self, sql: str, **params: Any) -> Any:
        ((value,),) = await self.rows(sql, **params)
        return value

    def writes_by_worker(self) -> Counter[int]:
        """How many idempotent writes each worker process answered, from the per-process files
        that prometheus_client keeps in PROMETHEUS_MULTIPROC_DIR (one ``counter_<pid>.db`` each)."""
        found: Counter[int] = Counter()
        for path in self.metrics_dir.glob("counter_*.db"):
            pid = int(path.stem.split("_")[1])
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
                if key.startswith('["chatkeep_writes"'):
                    found[pid] += int(value)
        return +found


@pytest.fixture(scope="module")
def cluster(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("g1-server")
    metrics_dir = tmp / "metrics"
    metrics_dir.mkdir()
    accounts = make_accounts_sync(module_db_url, "alice")
    env = {
        "CHATKEEP_DATABASE_URL": module_db_url,
        "CHATKEEP_DATA_DIR": str(tmp / "data"),
        "CHATKEEP_RATE_LIMIT_PER_MINUTE": "0",
        "CHATKEEP_OLLAMA_AUTODETECT": "false",
        # Ours rather than one serve would make, so the test can read each worker's counters.
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    server = ServerProcess(env, workers=WORKERS, log_path=tmp / "server.log")
    try:
        server.start()
        _wait_for_workers(server, metrics_dir)
        yield Cluster(server, accounts["alice"], module_db_url, metrics_dir)
    finally:
        server.stop()


def _wait_for_workers(server: ServerProcess, metrics_dir: Path) -> None:
    """``start`` returns once one worker answers; wait until every worker has imported the app
    (each creates its metrics file then), so that a burst can reach all of them."""
    assert server.proc is not None
    for _ in range(400):
        pids = {p.stem.split("_")[1] for p in metrics_dir.glob("counter_*.db")}
        if len(pids - {str(server.proc.pid)}) >= WORKERS:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"only {len(pids)} of {WORKERS} workers started")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(WORKERS * 4):
            assert client.get("/readyz").status_code == 200


def _assert_spread(cluster: Cluster, before: Counter[int]) -> None:
    """The burst reached more than one process: otherwise the test proved nothing about G1
    across processes."""
    by_worker = cluster.writes_by_worker() - before
    assert len(by_worker) >= 2, f"one worker answered every write: {dict(by_worker)}"


async def test_concurrent_puts_of_one_session_create_one_row(cluster: Cluster) -> None:
    """200 identical PUTs of one session at once: one 201, 199 replays of the same body."""
    sid = new_id()
    body = {"title": "Double click", "model": "demo"}
    before = cluster.writes_by_worker()
    responses = await cluster.burst([(f"/api/sessions/{sid}", body)] * 200)

    assert Counter(r.status_code for r in responses) == {201: 1, 200: 199}
    assert all(r.json() == responses[0].json() for r in responses)
    assert responses[0].json()["id"] == sid
    assert await cluster.scalar("SELECT count(*) FROM sessions WHERE id = :id", id=sid) == 1
    _assert_spread(cluster, before)


async def test_concurrent_puts_of_one_message_create_one_row(cluster: Cluster) -> None:
    """200 identical PUTs of one message at once: one row, seq 1, last_seq 1."""
    sid, mid = new_id(), new_id()
    body = {"role": "user", "content": "Hello, once"}
    before = cluster.writes_by_worker()
    assert (await cluster.put(f"/api/sessions/{sid}", {})).status_code == 201
    responses = await cluster.burst([(f"/api/sessions/{sid}/messages/{mid}", body)] * 200)

    assert Counter(r.status_code for r in responses) == {201: 1, 200: 199}
    assert all(r.json() == responses[0].json() for r in responses)
    assert responses[0].json()["seq"] == 1
    assert await cluster.scalar("SELECT count(*) FROM messages WHERE id = :id", id=mid) == 1
    assert await cluster.scalar("SELECT last_seq FROM sessions WHERE id = :id", id=sid) == 1
    _assert_spread(cluster, before)


async def test_concurrent_appends_get_contiguous_seqs(cluster: Cluster) -> None:
    """100 different messages appended at once: all 201, seqs exactly 1..100, last_seq 100."""
    sid = new_id()
    mids = [new_id() for _ in range(100)]
    requests = [
        (f"/api/sessions/{sid}/messages/{mid}", {"role": "user", "content": f"message {n}"})
        for n, mid in enumerate(mids)
    ]
    before = cluster.writes_by_worker()
    assert (await cluster.put(f"/api/sessions/{sid}", {})).status_code == 201
    responses = await cluster.burst(requests)

    assert [r.status_code for r in responses] == [201] * 100
    assert sorted(r.json()["seq"] for r in responses) == list(range(1, 101))
    stored = await cluster.rows(
        "SELECT m.id, m.seq FROM messages m JOIN sessions s ON s.pk = m.session_pk"
        " WHERE s.id = :id ORDER BY m.seq",
        id=sid,
    )
    assert [seq for _, seq in stored] == list(range(1, 101))
    assert sorted(mid for mid, _ in stored) == sorted(mids)
    # Each answer names the seq that was stored for that id.
    assert dict(stored) == {r.json()["id"]: r.json()["seq"] for r in responses}
    assert await cluster.scalar("SELECT last_seq FROM sessions WHERE id = :id", id=sid) == 100
    _assert_spread(cluster, before)
