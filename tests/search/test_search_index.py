"""The search index itself, asked of the database: a streaming reply is indexed once, when it
reaches a final status, and not at each 250 ms checkpoint; migration 0003 indexes the rows that
were there before it; the PostgreSQL language setting stems words and re-indexes."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, text, update

from chatkeep.store import migrate, search
from chatkeep.store.engine import Database
from chatkeep.store.tables import ChatSession, Message, User, table
from support.factories import new_id

M = table(Message)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()


async def indexed(db: Database, message_pk: int) -> int:
    """How many index entries the message has (0 or 1)."""
    sql = (
        "SELECT count(*) FROM search_messages_docsize WHERE id = :pk"
        if db.dialect_name == "sqlite"
        else "SELECT count(*) FROM messages WHERE pk = :pk AND search_tsv IS NOT NULL"
    )
    return int(await db.read(lambda conn: conn.scalar(text(sql), {"pk": message_pk})) or 0)


async def hits(db: Database, user_pk: int, q: str) -> list[str | None]:
    page = await db.read(search.search, user_pk=user_pk, q=q, limit=100)
    return [hit["message_id"] for hit in page["hits"]]


async def make_user_and_session(db: Database) -> tuple[int, int]:
    def work(conn: Any) -> tuple[int, int]:
        user_pk = conn.scalar(
            insert(table(User)).values(name=new_id()[:30]).returning(table(User).c.pk)
        )
        session_pk = conn.scalar(
            insert(table(ChatSession))
            .values(user_pk=user_pk, id=new_id(), title="", request_hash="x")
            .returning(table(ChatSession).c.pk)
        )
        return int(user_pk), int(session_pk)

    return await db.write(work)


async def test_a_reply_is_indexed_once_when_it_reaches_a_final_status(db: Database) -> None:
    """Checkpoints rewrite a streaming reply every 250 ms (G2); the index only sees its final
    text, so words of a checkpoint that the final text no longer has are never found."""
    await migrate.upgrade(db)
    user_pk, session_pk = await make_user_and_session(db)
    reply_id = new_id()

    def start(conn: Any) -> int:
        values = {"session_pk": session_pk, "user_pk": user_pk, "id": reply_id, "seq": 1}
        values |= {"role": "assistant", "content": "", "status": "streaming", "request_hash": "x"}
        return int(conn.scalar(insert(M).values(values).returning(M.c.pk)))

    pk = await db.write(start)
    for text_so_far in ("draft", "draft words", "draft words grow"):

        def checkpoint(conn: Any, content: str = text_so_far) -> None:
            conn.execute(update(M).where(M.c.pk == pk).values(content=content))

        await db.write(checkpoint)
        assert await indexed(db, pk) == 0
        assert await hits(db, user_pk, "draft") == []

    def finish(conn: Any) -> None:
        values = {"content": "final answer", "status": "complete"}
        conn.execute(update(M).where(M.c.pk == pk).values(**values))

    await db.write(finish)
    assert await indexed(db, pk) == 1
    assert await hits(db, user_pk, "final answer") == [reply_id]
    assert await hits(db, user_pk, "draft") == []

    def renew_lease(conn: Any) -> None:  # a write that is not text leaves the index alone
        conn.execute(update(M).where(M.c.pk == pk).values(model="m2"))

    await db.write(renew_lease)
    assert (await indexed(db, pk), await hits(db, user_pk, "final")) == (1, [reply_id])


async def test_a_finished_turn_is_found_by_a_word_of_the_reply(api: httpx.AsyncClient) -> None:
    """End to end: the demo model's reply, streamed and checkpointed, is searchable once done."""
    sid, mid = new_id(), new_id()
    body = {"message": {"id": mid, "content": "tell me about okapis"}, "session": {}}
    async with api.stream("POST", f"/api/sessions/{sid}/turns", json=body) as response:
        assert response.status_code == 200
        events = [line async for line in response.aiter_lines() if line.startswith("event:")]
    assert events[-1] == "event: done", events
    found = (await api.get("/api/search", params={"q": "offline canned"})).json()["hits"]
    assert [(h["session_id"], h["role"]) for h in found] == [(sid, "assistant")]
    both = (await api.get("/api/search", params={"q": "okapis"})).json()["hits"]
    # the message, the reply that quotes it, and the title made from it
    assert sorted(str(h["role"]) for h in both) == ["None", "assistant", "user"]


async def test_migration_indexes_rows_that_already_exist(db: Database) -> None:
    """A database that holds chats before migration 0003 finds them after it."""
    await migrate.upgrade(db, "0001")
    sid, plain, parts = new_id(), new_id(), new_id()
    multimodal = [
        {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}},
        {"type": "text", "text": "an older photo of Mombasa"},
    ]

    def old_rows(conn: Any) -> None:
        conn.execute(
            text(
                "INSERT INTO users (name, is_admin, created_at)"
                " VALUES ('old', false, CURRENT_TIMESTAMP)"
            ),
            {},
        )
        conn.execute(
            text(
                "INSERT INTO sessions (user_pk, id, title, pinned, archived, last_seq,"
                " request_hash, created_at, updated_at) SELECT pk, :sid, 'Old Safari', false,"
                " false, 2, 'x', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM users WHERE name = 'old'"
            ),
            {"sid": sid},
        )
        for seq, (mid, content) in enumerate(
            [(plain, "lions near Nairobi"), (parts, multimodal)], start=1
        ):
            conn.execute(
                text(
                    "INSERT INTO messages (session_pk, user_pk, id, seq, role, content, status,"
                    " request_hash, created_at, updated_at) SELECT pk, user_pk, :mid, :seq,"
                    " 'user', :content, 'complete', 'x', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP"
                    " FROM sessions WHERE id = :sid"
                ),
                {"mid": mid, "seq": seq, "content": json.dumps(content), "sid": sid},
            )

    await db.write(old_rows)
    await migrate.upgrade(db)
    found = await db.read(lambda conn: conn.scalar(text("SELECT pk FROM users WHERE name = 'old'")))
    user_pk = int(found or 0)
    assert await hits(db, user_pk, "nairobi") == [plain]
    assert await hits(db, user_pk, "mombasa") == [parts]
    assert await hits(db, user_pk, "safari") == [None]


async def test_postgresql_language_setting_stems_and_reindexes(db: Database) -> None:
    """CHATKEEP_SEARCH_LANGUAGE=english: "running" finds "runs"; back to simple, it does not."""
    if db.dialect_name == "sqlite":
        pytest.skip("SQLite's unicode61 tokenizer has no language")
    await migrate.upgrade(db)
    user_pk, session_pk = await make_user_and_session(db)
    mid = new_id()

    def message(conn: Any) -> None:
        values = {
            "session_pk": session_pk, "user_pk": user_pk, "id": mid, "seq": 1, "role": "user",
            "content": "she runs daily", "request_hash": "x",
        }  # fmt: skip
        conn.execute(insert(M).values(values))

    await db.write(message)
    assert await hits(db, user_pk, "running") == []
    assert await db.write(search.use_language, language="english")
    assert not await db.write(search.use_language, language="english")
    assert await hits(db, user_pk, "running") == [mid]
    await db.write(search.use_language, language="simple")
    assert await hits(db, user_pk, "running") == []
    with pytest.raises(ValueError, match="klingon"):
        await db.write(search.use_language, language="klingon")


def _migration_0003() -> Any:
    path = Path(migrate.__file__).parent / "migrations" / "versions" / "0003_search.py"
    spec = importlib.util.spec_from_file_location("migration_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_postgresql_folds_accents_without_the_unaccent_extension(db: Database) -> None:
    """Where CREATE EXTENSION unaccent is refused, accents are still ignored, by Unicode
    decomposition; with the extension (the test cluster has it), the same."""
    if db.dialect_name == "sqlite":
        pytest.skip("PostgreSQL only")
    await migrate.upgrade(db)
    module = _migration_0003()
    sample = "Crème BRÛLÉE, ÉCOLE e\u0301te\u0301 Straße"

    def fold(conn: Any) -> tuple[str, str]:
        conn.execute(text(module.fold_function_sql(None, "pg_temp.fold_without")))
        without = conn.scalar(text("SELECT pg_temp.fold_without(:t)"), {"t": sample})
        with_it = conn.scalar(text("SELECT search_fold(:t)"), {"t": sample})
        return str(without), str(with_it)

    without, with_unaccent = await db.write(fold)
    assert without.split() == ["creme", "brulee", "ecole", "ete", "straße"]
    assert with_unaccent.split()[:4] == ["creme", "brulee", "ecole", "ete"]
