"""What the stream benchmarks read from outside the server: CPU of processes (from /proc),
PostgreSQL's commit counter, and small list helpers."""

from __future__ import annotations

import resource
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench._common import Context
from bench.turns_ttft import (
    CLOCK_TICKS,
)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_overlap(spans: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at the same moment."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def flat(lists: Any) -> list[float]:
    out = [x for xs in lists for x in xs]
    return out or [0.0]


# ---------------------------------------------------------------------------------------------
# PostgreSQL: write transactions and the server's own CPU


@asynccontextmanager
async def pg_probe(url: str) -> AsyncIterator[Callable[[], Awaitable[tuple[int, int] | None]]]:
    """The cluster's next transaction id, which only write transactions advance (reading it
    assigns none), and the WAL bytes written so far. None on SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":

        async def none() -> tuple[int, int] | None:
            return None

        yield none
        return
    conn = await asyncpg.connect(parsed.set(drivername="postgresql").render_as_string(False))

    async def probe() -> tuple[int, int] | None:
        row = await conn.fetchrow(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal"
        )
        assert row is not None
        return int(row["xid"]), int(row["wal"])

    try:
        yield probe
    finally:
        await conn.close()


def postmaster_pid(ctx: Context) -> int | None:
    if ctx.db != "postgres" or ctx.cluster is None:
        return None
    try:
        return int((ctx.cluster.datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pg_cpu(postmaster: int | None) -> float:
    """CPU seconds of the postmaster and its children (the backends, WAL writer, ...)."""
    if postmaster is None:
        return 0.0
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster or ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS
