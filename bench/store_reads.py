"""Read latency: loading a chat, paging through a long one, and the sidebar of a heavy user.

(a) a 50-message session: ``GET /api/sessions/{id}`` and, store-level, ``live_session`` +
``active_path`` as that route runs them; (b) one 100-message page of ``messages_after`` deep
inside a 10,000-message session (from seq 5,000) and its last page; (c) the first sidebar page
(``list_sessions``, limit 50) of a user with 10,000 sessions, and a page ~9,000 sessions down
by cursor. Each is timed three ways: around the store call in its read transaction ("store"), by
the server from request to last byte ("server"), and by the HTTP client ("http"). Baselines:
``SELECT 1`` in a ``Database.read`` transaction for the store, ``GET /healthz`` for HTTP.

PostgreSQL's statistics are brought up to date after the fill (``settle``), as autovacuum would.
Informative, no target: the whole active path of the 10,000-message session (what
``GET /api/sessions/{id}`` returns for a long chat).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from bench._common import Context, RatioAtMost, Result, Rows, TimeBelow, interleaved
from bench._fixtures import (
    BenchServer,
    create_session,
    fill_messages,
    fill_sessions,
    serve,
    settle,
    setup_users,
)
from chatkeep.store import messages, sessions
from chatkeep.store.engine import Database

NAME = "store_reads"
TITLE = "load a chat, page a long one, list the sidebar"
CAPTION = (
    "Targets (p99): load 50 messages < 5 ms server-side (source Benchmark 3 asks < 500 ms for "
    "the whole round trip: 'loads 50 messages in under 500ms'); a 100-message page < 10 ms; a "
    "sidebar page (limit 50) of a 10,000-session user < 10 ms. Store rows: x SELECT 1 in a read "
    "transaction; server and http rows: x GET /healthz."
)

BASE_STORE = "SELECT 1 (Database.read)"
BASE_SERVER = "GET /healthz (server-side)"
BASE_HTTP = "GET /healthz (round trip)"
Op = Callable[[], Awaitable[object]]
StoreCall = Callable[[Connection], object]


@dataclass(frozen=True)
class Read:
    """One read, as a store call and as the HTTP request that makes it."""

    label: str
    store: StoreCall
    path: str
    limit_ms: float | None = None
    source: str = ""
    # Issue 6: over HTTP within 2x GET /healthz on the same connection.
    near_healthz: bool = True


async def run(ctx: Context) -> list[Result]:
    n, warmup = ctx.scale(200, 30), ctx.scale(20, 5)
    n_long = ctx.scale(20, 3)
    url = ctx.new_database("reads")
    db, accounts = await setup_users(url, "bench", "neighbour")
    user = accounts["bench"]
    try:
        short = await create_session(db, user.user_pk, "fifty messages")
        await fill_messages(db, user.user_pk, short, 50)
        thousand = await create_session(db, user.user_pk, "a thousand messages")
        await fill_messages(db, user.user_pk, thousand, 1_000)
        long = await create_session(db, user.user_pk, "ten thousand messages")
        await fill_messages(db, user.user_pk, long, 10_000)
        # The user holds 10,000 sessions in all; a neighbour as many, so user_pk must filter.
        await fill_sessions(db, user.user_pk, 10_000 - 2)
        await fill_sessions(db, accounts["neighbour"].user_pk, 10_000)
        await settle(db)
        deep = await db.read(sessions.list_sessions, user_pk=user.user_pk, limit=9_000)
        cursor = deep["next_cursor"]
        reads = plan(user.user_pk, short, long, cursor)
        reads.append(
            Read(
                "whole path of a 1,000-message chat",
                path_of(user.user_pk, thousand),
                f"/api/sessions/{thousand}",
                10,  # issue 6: <= 10 ms server-side
                near_healthz=False,
            )
        )
        async with serve(url, ctx.workdir, user) as srv:
            ops: dict[str, Op] = {BASE_STORE: store_op(db, select_one)}
            ops[BASE_HTTP] = http_op(srv, "/healthz", BASE_SERVER)
            for read in reads:
                ops[store_case(read)] = store_op(db, read.store)
                ops[http_case(read)] = http_op(srv, read.path, server_case(read))
            samples = await interleaved(ops, n=n, warmup=warmup)
            whole = Read(
                "active path of 10,000 messages",
                path_of(user.user_pk, long),
                f"/api/sessions/{long}",
            )
            long_ops: dict[str, Op] = {
                "_base_store": store_op(db, select_one),
                "_base_http": http_op(srv, "/healthz", "_base_server"),
                store_case(whole): store_op(db, whole.store),
                http_case(whole): http_op(srv, whole.path, server_case(whole)),
            }
            long_samples = await interleaved(long_ops, n=n_long, warmup=1)
    finally:
        await db.dispose()
    return report(ctx, samples, reads, long_samples, whole)


def plan(user_pk: int, short: str, long: str, cursor: str) -> list[Read]:
    def deep_page(conn: Connection) -> object:
        row = sessions.live_session(conn, user_pk, long)
        return messages.messages_after(conn, row, after_seq=5_000, limit=100)

    def last_page(conn: Connection) -> object:
        row = sessions.live_session(conn, user_pk, long)
        return messages.messages_after(conn, row, after_seq=row.last_seq - 100, limit=100)

    def path_tail(conn: Connection) -> object:
        row = sessions.live_session(conn, user_pk, long)
        return messages.path_page(conn, row, limit=100)

    def sidebar(conn: Connection) -> object:
        return sessions.list_sessions(conn, user_pk=user_pk, limit=50)

    def sidebar_deep(conn: Connection) -> object:
        return sessions.list_sessions(conn, user_pk=user_pk, limit=50, cursor=cursor)

    source3 = "source Benchmark 3 asks < 500 ms round trip"
    return [
        Read("load 50 messages", path_of(user_pk, short), f"/api/sessions/{short}", 5, source3),
        Read(
            "100-message page from seq 5,000 of 10,000",
            deep_page,
            f"/api/sessions/{long}/messages?after_seq=5000&limit=100",
            10,
        ),
        Read(
            "last 100-message page of 10,000",
            last_page,
            f"/api/sessions/{long}/messages?after_seq={10_000 - 100}&limit=100",
            10,
        ),
        Read(
            "last 100 of a 10,000-message active path",
            path_tail,
            f"/api/sessions/{long}?limit=100",
            10,
        ),
        Read("sidebar page 1 of 10,000 sessions", sidebar, "/api/sessions?limit=50", 10),
        Read(
            "sidebar page ~9,000 sessions down",
            sidebar_deep,
            f"/api/sessions?limit=50&cursor={cursor}",
            10,
        ),
    ]


def path_of(user_pk: int, session_id: str) -> StoreCall:
    """What ``GET /api/sessions/{id}`` runs: the session row, then its active path."""

    def load(conn: Connection) -> object:
        row = sessions.live_session(conn, user_pk, session_id)
        return messages.active_path(conn, row)

    return load


def select_one(conn: Connection) -> object:
    return conn.execute(text("SELECT 1"))


def store_case(read: Read) -> str:
    return f"{read.label} (store)"


def server_case(read: Read) -> str:
    return f"{read.label} (server-side)"


def http_case(read: Read) -> str:
    return f"{read.label} (round trip)"


def store_op(db: Database, call: StoreCall) -> Op:
    async def op() -> None:
        await db.read(call)

    return op


def http_op(srv: BenchServer, path: str, server_series: str) -> Op:
    async def op() -> dict[str, float]:
        return {server_series: await srv.call("GET", path, 200)}

    return op


def report(
    ctx: Context,
    samples: dict[str, list[float]],
    reads: list[Read],
    long_samples: dict[str, list[float]],
    whole: Read,
) -> list[Result]:
    rows = Rows(NAME, ctx.db)
    rows.add(BASE_STORE, samples[BASE_STORE], layer="store", note="baseline")
    rows.add(BASE_SERVER, samples[BASE_SERVER], layer="server", note="baseline")
    rows.add(BASE_HTTP, samples[BASE_HTTP], layer="http", note="baseline")
    for read in reads:
        limit = [TimeBelow(read.limit_ms)] if read.limit_ms is not None else []
        rows.add(
            store_case(read), samples[store_case(read)], layer="store", vs=BASE_STORE, targets=limit
        )
        rows.add(
            server_case(read),
            samples[server_case(read)],
            layer="server",
            vs=BASE_SERVER,
            targets=limit,
        )
        # Issue 6: over HTTP, each of these reads within 2x GET /healthz on the same connection.
        trip: list[Any] = [RatioAtMost(BASE_HTTP, 2.0)] if read.near_healthz else []
        if read.source:
            trip.append(TimeBelow(500, source="source Benchmark 3"))
        rows.add(
            http_case(read), samples[http_case(read)], layer="http", vs=BASE_HTTP, targets=trip
        )
    # The long read ran in its own interleaved loop, with its own baselines.
    long_rows = Rows(NAME, ctx.db)
    long_rows.add(BASE_STORE, long_samples["_base_store"], layer="store")
    long_rows.add(BASE_SERVER, long_samples["_base_server"], layer="server")
    long_rows.add(BASE_HTTP, long_samples["_base_http"], layer="http")
    note = "informative: the whole path, no page limit"
    long_rows.add(
        store_case(whole), long_samples[store_case(whole)], layer="store", vs=BASE_STORE, note=note
    )
    long_rows.add(
        server_case(whole),
        long_samples[server_case(whole)],
        layer="server",
        vs=BASE_SERVER,
        note=note,
    )
    long_rows.add(
        http_case(whole), long_samples[http_case(whole)], layer="http", vs=BASE_HTTP, note=note
    )
    return rows.results + long_rows.results[3:]
