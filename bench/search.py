"""Full-text search (issue 10): ``GET /api/search`` for a user with 10,000 chats and 1,000,000
messages, and what keeping the index costs a write.

The messages are built with bulk inserts (the index triggers fire as for any write), of words
drawn from a Zipf-like vocabulary, plus probe words planted in a known number of messages: a
rare word (10), a phrase (100), a word in 0.1 %, 1 % and 10 % of the messages. Each query is
timed server-side (``ServerClock``) and as a round trip; ranking costs grow with the matches.

The write overhead compares the same writes into two databases, one with the search triggers
and one from which migration 0003's triggers were dropped: a user message appended through
``append_message``, and a 1,500-character reply reaching its final status.
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from sqlalchemy import Connection, insert, text, update

from bench._common import Context, RatioAtMost, Result, Rows, TimeBelow, interleaved
from bench._fixtures import create_session, new_message, serve, settle, setup_users
from chatkeep.store import messages
from chatkeep.store.engine import Database
from chatkeep.store.tables import ChatSession, Message, table, utcnow
from support.factories import new_id

NAME = "search"
TITLE = "full-text search over one user's 1,000,000 messages; write overhead of the index"
CAPTION = (
    "Targets (issue 10): GET /api/search p99 < 50 ms server-side; an indexed write <= 1.3x the "
    "same write without the index (p50)."
)
ORDER = 60
S, M = table(ChatSession), table(Message)
_CHUNK = 5_000
_SYLLABLES = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
# (query, how many messages hold it at full scale); a count below 1 is a fraction of them.
PROBES = {
    "rare": ("quokka", 10),
    "phrase": ('"northern lights"', 100),
    "0.1 %": ("marmalade", 0.001),
    "1 %": ("lantern", 0.01),
    "10 %": ("window", 0.1),
}
QUERIES = {
    "rare word": "quokka",
    "phrase": '"northern lights"',
    "word in 0.1 %": "marmalade",
    "word in 1 %": "lantern",
    "word in 10 %": "window",
    "two words (1 % and 10 %)": "lantern window",
    "exclusion": "lantern -window",
    "OR": "quokka or marmalade",
    "no match": "xylophonist",
}
LISTED = {"sidebar list, word in 10 %": "window", "sidebar list, title substring": "chat 12"}


def _cases() -> dict[str, tuple[str, str]]:
    """Each timed request: (path, q)."""
    cases = {case: ("/api/search", q) for case, q in QUERIES.items()}
    return cases | {case: ("/api/sessions", q) for case, q in LISTED.items()}


APPEND_PLAIN, APPEND_INDEXED = "append, no index", "append, indexed"
FINISH_PLAIN, FINISH_INDEXED = "reply finished, no index", "reply finished, indexed"


def vocabulary(rng: random.Random, size: int) -> list[str]:
    return ["".join(rng.choices(_SYLLABLES, k=rng.randint(2, 4))) for _ in range(size)]


class Texts:
    """Message texts of 20-60 Zipf-distributed words, with the probe words planted in a known
    number of them; made lazily, in order, so that a million never sit in memory at once."""

    def __init__(self, rng: random.Random, count: int) -> None:
        self.rng = rng
        self.words = vocabulary(rng, 20_000)
        self.cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(20_000)))
        self.planted: dict[int, list[str]] = {}
        for probe, share in PROBES.values():
            holders = max(1, round(share * count)) if share < 1 else min(int(share), count)
            for index in rng.sample(range(count), holders):
                self.planted.setdefault(index, []).append(probe.strip('"'))

    def make(self, index: int) -> str:
        words = self.rng.choices(
            self.words, cum_weights=self.cumulative, k=self.rng.randint(20, 60)
        )
        for probe in self.planted.get(index, ()):
            words.insert(self.rng.randrange(len(words) + 1), probe)
        return " ".join(words)


async def fill(db: Database, user_pk: int, chats: int, per_chat: int, rng: random.Random) -> None:
    """``chats`` chats of ``per_chat`` messages each, by bulk insert, in several transactions."""
    bodies = Texts(rng, chats * per_chat)
    now = utcnow()
    for first in range(0, chats, max(1, _CHUNK // per_chat)):
        batch = range(first, min(chats, first + max(1, _CHUNK // per_chat)))

        def work(conn: Connection, batch: range = batch) -> None:
            rows = [
                {
                    "user_pk": user_pk,
                    "id": new_id(),
                    "title": f"Chat {i} on {bodies.words[i % 1000]}",
                    "last_seq": per_chat,
                    "request_hash": secrets.token_hex(8),
                    "created_at": now,
                    "updated_at": now,
                }
                for i in batch
            ]
            pks = conn.execute(insert(S).returning(S.c.pk), rows).scalars().all()
            messages_rows = [
                {
                    "session_pk": pk,
                    "user_pk": user_pk,
                    "id": new_id(),
                    "seq": seq + 1,
                    "role": "user" if seq % 2 == 0 else "assistant",
                    "content": bodies.make(i * per_chat + seq),
                    "status": "complete",
                    "request_hash": "x",
                    "created_at": now,
                    "updated_at": now,
                }
                for i, pk in zip(batch, pks, strict=True)
                for seq in range(per_chat)
            ]
            conn.execute(insert(M), messages_rows)

        await db.write(work)


async def run(ctx: Context) -> list[Result]:
    chats, per_chat = ctx.scale(10_000, 100), ctx.scale(100, 50)
    n, warmup = ctx.scale(200, 15), ctx.scale(10, 3)
    rng = random.Random(10)
    url = ctx.new_database("search")
    db, accounts = await setup_users(url, "bench")
    user = accounts["bench"]
    try:
        await fill(db, user.user_pk, chats, per_chat, rng)
        await settle(db)
        async with serve(url, ctx.workdir, user) as srv:

            def query(case: str, path: str, q: str) -> Callable[[], Awaitable[dict[str, float]]]:
                async def op() -> dict[str, float]:
                    seconds = await srv.call("GET", path, 200, params={"q": q})
                    return {f"{case} (server)": seconds}

                return op

            ops = {case: query(case, path, q) for case, (path, q) in _cases().items()}
            samples = await interleaved(ops, n=n, warmup=warmup)
    finally:
        await db.dispose()
    writes = await write_overhead(ctx, n=ctx.scale(300, 30), warmup=warmup)
    return report(ctx, samples, writes, chats * per_chat)


async def write_overhead(ctx: Context, *, n: int, warmup: int) -> dict[str, list[float]]:
    indexed = await _writer(ctx, "indexed", keep=True, finish_case=FINISH_INDEXED)
    plain = await _writer(ctx, "plain", keep=False, finish_case=FINISH_PLAIN)
    made = Texts(random.Random(7), 30)
    reply = " ".join(made.make(i) for i in range(30))[:1500]
    try:
        ops: dict[str, Callable[[], Awaitable[object]]] = {
            APPEND_PLAIN: plain.append,
            APPEND_INDEXED: indexed.append,
            FINISH_PLAIN: lambda: plain.finish(reply),
            FINISH_INDEXED: lambda: indexed.finish(reply),
        }
        samples = await interleaved(ops, n=n, warmup=warmup)
    finally:
        await indexed.db.dispose()
        await plain.db.dispose()
    for case in (FINISH_PLAIN, FINISH_INDEXED):
        samples[case] = samples.pop(f"{case} (finish only)")
    return samples


class _Writer:
    """Writes into one session of one database, with or without the search triggers."""

    def __init__(self, db: Database, user_pk: int, session_id: str, finish_case: str) -> None:
        self.db, self.user_pk, self.session_id = db, user_pk, session_id
        self.finish_case = finish_case
        self.session_pk = 0
        self.seq = 1_000_000

    async def append(self) -> None:
        msg = new_message()
        await self.db.write(
            messages.append_message, user_pk=self.user_pk, session_id=self.session_id, msg=msg
        )

    async def finish(self, reply: str) -> dict[str, float]:
        """A streaming reply inserted (untimed), then its final write (the timed series)."""
        self.seq += 1
        values: dict[str, Any] = {
            "session_pk": self.session_pk,
            "user_pk": self.user_pk,
            "id": new_id(),
            "seq": self.seq,
            "role": "assistant",
            "content": reply[:200],
            "status": "streaming",
            "request_hash": "x",
        }
        pk = await self.db.write(
            lambda conn: conn.scalar(insert(M).values(values).returning(M.c.pk))
        )
        started = perf_counter()
        await self.db.write(
            lambda conn: conn.execute(
                update(M).where(M.c.pk == pk).values(content=reply, status="complete")
            )
        )
        return {f"{self.finish_case} (finish only)": perf_counter() - started}


async def _writer(ctx: Context, name: str, *, keep: bool, finish_case: str) -> _Writer:
    url = ctx.new_database(f"write_{name}")
    db, accounts = await setup_users(url, "writer")
    user_pk = accounts["writer"].user_pk
    if not keep:
        await db.write(_drop_triggers)
    writer = _Writer(db, user_pk, await create_session(db, user_pk, "writes"), finish_case)
    found = await db.read(
        lambda conn: conn.scalar(
            text("SELECT pk FROM sessions WHERE id = :id"), {"id": writer.session_id}
        )
    )
    writer.session_pk = int(found or 0)
    return writer


def _drop_triggers(conn: Connection) -> None:
    for name in ("messages_insert", "messages_update", "messages_delete"):
        on = "" if conn.dialect.name == "sqlite" else " ON messages"  # the column stays NULL
        conn.execute(text(f"DROP TRIGGER IF EXISTS search_{name}{on}"))


def report(
    ctx: Context,
    searches: dict[str, list[float]],
    writes: dict[str, list[float]],
    total: int,
) -> list[Result]:
    rows = Rows(NAME, ctx.db)
    for case, (path, q) in _cases().items():
        note = f"{path}?q={q}; {total:,} messages"
        rows.add(f"{case} (server)", searches[f"{case} (server)"], layer="server", note=note,
                 targets=[TimeBelow(50, source="issue 10")])  # fmt: skip
        rows.add(f"{case} (round trip)", searches[case], layer="http", vs=f"{case} (server)")
    rows.add(APPEND_PLAIN, writes[APPEND_PLAIN], layer="store", note="baseline")
    rows.add(APPEND_INDEXED, writes[APPEND_INDEXED], layer="store", vs=APPEND_PLAIN,
             targets=[RatioAtMost(APPEND_PLAIN, 1.3)])  # fmt: skip
    rows.add(FINISH_PLAIN, writes[FINISH_PLAIN], layer="store", note="1,500 characters")
    rows.add(FINISH_INDEXED, writes[FINISH_INDEXED], layer="store", vs=FINISH_PLAIN,
             targets=[RatioAtMost(FINISH_PLAIN, 1.3)])  # fmt: skip
    return rows.results
