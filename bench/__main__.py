"""``python -m bench [--quick] [--db sqlite|postgres|both] [--only NAME ...]``

Runs every benchmark module of this package in turn (see README.md for what makes a module one),
on each database asked for; prints one table per benchmark and writes its results to
``bench/results/<name>-<timestamp>.json`` and ``bench/results/<name>-latest.json``.

A missed target is printed as FAIL but does not change the exit status: this machine is noisy,
and one slow run is not a regression. An exception does: exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import pkgutil
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench._common import (
    Context,
    DbKind,
    Result,
    environment,
    start_postgres,
    write_results,
)

ALL_DATABASES: tuple[DbKind, ...] = ("sqlite", "postgres")


def discover(only: Sequence[str] | None = None) -> list[ModuleType]:
    """Every module of this package whose name does not start with ``_`` and which defines
    ``async def run(ctx)``, in name order (or by an optional module-level ``ORDER``). With
    ``only``, just those modules are imported; an unknown name is an error."""
    names = [i.name for i in pkgutil.iter_modules([str(Path(__file__).parent)])]
    names = sorted(n for n in names if not n.startswith("_"))
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"no benchmark named {', '.join(unknown)}; have {', '.join(names)}")
        names = [n for n in names if n in only]
    found = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if inspect.iscoroutinefunction(getattr(module, "run", None)):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), name_of(m)))


def name_of(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a CI smoke run")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=220)
    modules = discover(args.only)
    if args.list:
        for module in modules:
            console.print(f"{name_of(module)}: {getattr(module, 'TITLE', '')}")
        return 0
    databases = ALL_DATABASES if args.db == "both" else (args.db,)
    run_started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chatkeep-bench-"))
    cluster = None
    errors: list[str] = []
    durations: dict[str, float] = {}
    try:
        if "postgres" in databases:
            cluster = start_postgres()
        env = environment(cluster)
        for module in modules:
            name = name_of(module)
            started_at, began = datetime.now(UTC), time.monotonic()
            results: list[Result] = []
            for db in databases:
                if db not in getattr(module, "DATABASES", ALL_DATABASES):
                    continue
                console.print(f"[dim]{name} on {db} ...")
                ctx = Context(
                    db=db, quick=args.quick, workdir=workdir / f"{name}-{db}", cluster=cluster
                )
                ctx.workdir.mkdir(parents=True)
                try:
                    results.extend(asyncio.run(module.run(ctx)))
                except Exception:
                    console.print_exception()
                    errors.append(f"{name} on {db}")
            durations[name] = time.monotonic() - began
            console.print(render(module, results, durations[name]))
            payload = {
                "benchmark": name,
                "title": getattr(module, "TITLE", name),
                "caption": getattr(module, "CAPTION", ""),
                "started_at": started_at.isoformat(),
                "duration_s": round(durations[name], 3),
                "quick": args.quick,
                "databases": list(databases),
                "errors": [e for e in errors if e.startswith(f"{name} on ")],
                "environment": env,
                "results": [r.to_json() for r in results],
            }
            path = write_results(name, payload, started=started_at)
            console.print(f"[dim]wrote {path}\n")
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    total = time.monotonic() - run_started
    timings = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in durations.items())
    console.print(f"total {total:.1f} s ({timings})")
    if errors:
        console.print(f"[red]errors in: {', '.join(errors)}")
        return 1
    return 0


def render(module: ModuleType, results: list[Result], seconds: float) -> Table:
    table = Table(
        title=f"{name_of(module)}: {getattr(module, 'TITLE', '')}  ({seconds:.1f} s)",
        caption=getattr(module, "CAPTION", None),
        caption_justify="left",
        show_lines=False,
    )
    table.add_column("db")
    table.add_column("case")
    table.add_column("layer")
    table.add_column("n", justify="right")
    for stat in ("p50", "p90", "p99"):
        table.add_column(f"{stat} ms", justify="right")
    table.add_column("x baseline p50 / p99")
    table.add_column("target")
    table.add_column("result")
    for i, row in enumerate(results):
        last_of_db = i + 1 == len(results) or results[i + 1].db != row.db
        case = Text(row.case)
        if row.note:
            case.append(f"\n{row.note}", style="dim")
        ratio = Text("baseline" if row.vs is None else "", style="dim")
        if row.vs is not None:
            ratio.append(f"{row.ratio_p50:.2f}x / {row.ratio_p99:.2f}x")
            ratio.append(f"\n{row.vs}", style="dim")
        targets = Text("\n".join(f"{c.target}: {_figure(c.value, c.unit)}" for c in row.checks))
        verdict = Text()
        for j, check in enumerate(row.checks):
            verdict.append(
                ("\n" if j else "") + ("PASS" if check.passed else "FAIL"),
                style="green" if check.passed else "bold red",
            )
        table.add_row(
            row.db,
            case,
            row.layer,
            str(row.stats.n),
            f"{row.stats.p50:.2f}",
            f"{row.stats.p90:.2f}",
            f"{row.stats.p99:.2f}",
            ratio,
            targets,
            verdict,
            end_section=last_of_db,
        )
    return table


def _figure(value: float, unit: str) -> str:
    return f"{value:.2f}x" if unit == "x" else f"{value:.2f} ms"


if __name__ == "__main__":
    sys.exit(main())
