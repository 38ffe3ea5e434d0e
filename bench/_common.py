"""What every benchmark shares: interleaved timing, percentiles, results with their targets,
the run's context (which database, quick or full), a durable PostgreSQL cluster, JSON output.

The machine that runs these is small and noisy, so an absolute figure means little on its own.
Every row is therefore stated as a ratio to a baseline measured in the same process and run, and
the cases of one benchmark are timed interleaved (one of each per round, in a rotating order) so
that a noisy second slows all of them alike instead of one case only.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import Any, Literal

from support.postgres import PostgresCluster

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"

DbKind = Literal["sqlite", "postgres"]
Stat = Literal["p50", "p90", "p99"]

# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default method."""
    if not sorted_samples:
        raise ValueError("no samples")
    rank = (len(sorted_samples) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_samples) - 1)
    return sorted_samples[low] + (sorted_samples[high] - sorted_samples[low]) * (rank - low)


@dataclass(frozen=True)
class Stats:
    """Latency statistics in milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, samples_s: Sequence[float]) -> Stats:
        ms = sorted(s * 1000 for s in samples_s)
        return cls(
            n=len(ms),
            p50=percentile(ms, 50),
            p90=percentile(ms, 90),
            p99=percentile(ms, 99),
            mean=sum(ms) / len(ms),
            min=ms[0],
            max=ms[-1],
        )

    def get(self, stat: Stat) -> float:
        return float(getattr(self, stat))


# ---------------------------------------------------------------------------------------------
# Results and targets


@dataclass(frozen=True)
class Check:
    """One target and whether this run met it; ``unit`` is "x" (a ratio) or "ms"."""

    target: str
    value: float
    limit: float
    unit: str
    passed: bool


@dataclass(frozen=True)
class RatioAtMost:
    """Target: ``stat`` of this row is at most ``limit`` times the same stat of row ``ref``."""

    ref: str
    limit: float
    stat: Stat = "p50"


@dataclass(frozen=True)
class TimeBelow:
    """Target: ``stat`` of this row is below ``limit_ms``; ``source`` names where it comes from."""

    limit_ms: float
    stat: Stat = "p99"
    source: str = ""


@dataclass(frozen=True)
class SpreadAtMost:
    """Target: this row's p99 is at most ``limit`` times its own p50 (a steady tail)."""

    limit: float


@dataclass(frozen=True)
class SumAtMost:
    """Target: ``stat`` of this row is at most the sum of ``factor x stat`` of rows ``terms``,
    e.g. an HTTP append <= GET /healthz + 1.5x a raw INSERT."""

    terms: tuple[tuple[str, float], ...]
    stat: Stat = "p50"


Target = RatioAtMost | TimeBelow | SpreadAtMost | SumAtMost


@dataclass
class Result:
    """One measured case on one database, its ratio to a baseline row, and its checks."""

    bench: str
    db: str
    case: str
    layer: str  # driver | store | server | http: where the clock was started and stopped
    stats: Stats
    vs: str | None
    ratio_p50: float | None
    ratio_p99: float | None
    checks: list[Check] = field(default_factory=list)
    note: str = ""
    samples_ms: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples_ms"] = [round(s, 4) for s in self.samples_ms]
        return data


class Rows:
    """Builds the results of one benchmark on one database, row by row; a row's ``vs`` and the
    ``ref`` of its targets name rows added before it."""

    def __init__(self, bench: str, db: str) -> None:
        self.bench = bench
        self.db = db
        self.results: list[Result] = []

    def __getitem__(self, case: str) -> Result:
        for result in self.results:
            if result.case == case:
                return result
        raise KeyError(f"{self.bench}: no row {case!r} yet")

    def add(
        self,
        case: str,
        samples_s: Sequence[float],
        *,
        layer: str,
        vs: str | None = None,
        targets: Sequence[Target] = (),
        note: str = "",
    ) -> Result:
        stats = Stats.of(samples_s)
        ratio_p50 = ratio_p99 = None
        if vs is not None:
            base = self[vs].stats
            ratio_p50, ratio_p99 = stats.p50 / base.p50, stats.p99 / base.p99
        result = Result(
            bench=self.bench,
            db=self.db,
            case=case,
            layer=layer,
            stats=stats,
            vs=vs,
            ratio_p50=ratio_p50,
            ratio_p99=ratio_p99,
            checks=[self._check(stats, target) for target in targets],
            note=note,
            samples_ms=[s * 1000 for s in samples_s],
        )
        self.results.append(result)
        return result

    def _check(self, stats: Stats, target: Target) -> Check:
        if isinstance(target, SpreadAtMost):
            value = stats.p99 / stats.p50
            return Check(
                f"p99 <= {target.limit:g}x own p50", value, target.limit, "x", value <= target.limit
            )
        if isinstance(target, SumAtMost):
            limit = sum(f * self[ref].stats.get(target.stat) for ref, f in target.terms)
            label = " + ".join(f"{f:g}x {ref}" for ref, f in target.terms)
            value = stats.get(target.stat)
            return Check(
                f"{target.stat} <= {label} = {limit:.2f} ms", value, limit, "ms", value <= limit
            )
        if isinstance(target, RatioAtMost):
            value = stats.get(target.stat) / self[target.ref].stats.get(target.stat)
            return Check(
                f"{target.stat} <= {target.limit:g}x {target.ref}",
                value,
                target.limit,
                "x",
                value <= target.limit,
            )
        value = stats.get(target.stat)
        source = f" ({target.source})" if target.source else ""
        return Check(
            f"{target.stat} < {target.limit_ms:g} ms{source}",
            value,
            target.limit_ms,
            "ms",
            value < target.limit_ms,
        )


# ---------------------------------------------------------------------------------------------
# Timing

Op = Callable[[], Awaitable[object]]


async def interleaved(ops: Mapping[str, Op], *, n: int, warmup: int) -> dict[str, list[float]]:
    """Time ``n`` calls of each op (after ``warmup`` untimed rounds), one of each per round in a
    rotating order. Returns seconds per op. An op may return ``{series: seconds}`` to record
    extra series measured inside it (e.g. the server's own time for an HTTP request)."""
    names = list(ops)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + n):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started = perf_counter()
            extra = await ops[name]()
            elapsed = perf_counter() - started
            if round_ < warmup:
                continue
            samples[name].append(elapsed)
            if isinstance(extra, Mapping):
                for series, seconds in extra.items():
                    samples.setdefault(series, []).append(float(seconds))
    return samples


# ---------------------------------------------------------------------------------------------
# The run's context


@dataclass
class Context:
    """What a benchmark's ``run(ctx)`` gets: the database kind to measure, quick or full, a
    scratch directory, and (for PostgreSQL) the run's cluster."""

    db: DbKind
    quick: bool
    workdir: Path
    cluster: PostgresCluster | None = None

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def new_database(self, name: str) -> str:
        """The async SQLAlchemy URL of a fresh, empty database: a SQLite file in the scratch
        directory (WAL, synchronous=FULL once chatkeep opens it) or a new PostgreSQL database."""
        if self.db == "sqlite":
            return f"sqlite+aiosqlite:///{self.workdir / f'{name}-{uuid.uuid4().hex[:8]}.db'}"
        if self.cluster is None:
            raise RuntimeError("no PostgreSQL cluster in this run")
        return self.cluster.create_database(f"{name}_{uuid.uuid4().hex[:8]}")


def start_postgres() -> PostgresCluster:
    """A throwaway cluster, durable like a production server. The test cluster turns fsync and
    synchronous_commit off for speed; a benchmark of commits must not."""
    durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    return PostgresCluster(extra_settings=durable).start()


# ---------------------------------------------------------------------------------------------
# Output


def environment(cluster: PostgresCluster | None) -> dict[str, Any]:
    """Where the figures come from, recorded next to them."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "git_commit": _git_commit(),
    }
    if cluster is not None and cluster.running:
        env["postgres"] = cluster.psql("SHOW server_version")
        env["postgres_durability"] = cluster.psql(
            "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings "
            "WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')"
        )
    return env


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_results(name: str, payload: dict[str, Any], *, started: datetime) -> Path:
    """Write ``bench/results/<name>-<timestamp>.json`` and ``<name>-latest.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, default=str) + "\n"
    stamped = RESULTS_DIR / f"{name}-{started.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"
    stamped.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    return stamped
