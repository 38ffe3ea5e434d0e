"""Full-text search over the caller's message text and chat titles, ranked, paged by keyset.

The indexes (migration 0003) are kept in step by triggers: FTS5 tables ``search_messages`` and
``search_titles`` on SQLite, a ``search_tsv`` column of ``messages`` and of ``sessions``
(tsvector + GIN) on PostgreSQL. A hit is a message (one per message) or a chat whose title
matches; every query is filtered by the caller's ``user_pk`` (G7), and a deleted chat has no
messages and an empty title, so it is never found (G5). The query language lives in
``search_syntax``; docs/search.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from sqlalchemy import Connection, TextClause, TextualSelect, bindparam, select, text
from sqlalchemy.types import Integer

from chatkeep.problems import Invalid, InvalidQuery
from chatkeep.store.search_syntax import Query, parse, snippet
from chatkeep.store.tables import ChatSession, Message, table

S = table(ChatSession)
M = table(Message)
_TITLE, _MESSAGE = 0, 1  # hit kinds, in the order ties are broken
_LANGUAGE_LOCK_KEY = 0x636B_736C  # "cksl"
WINDOW = 1000  # matches ranked together; see _Window
LIST_MATCHES = 5000  # newest matching messages whose chats GET /api/sessions?q= lists


def is_search_object(name: str | None) -> bool:
    """Tables, views, columns and indexes of migration 0003, which the declared schema leaves
    out: they are SQL of their own (FTS5, tsvector), set only by triggers."""
    return bool(name) and str(name).startswith("search_")


def _pg_tsquery(query: Query) -> tuple[str, dict[str, str]]:
    """The tsquery of ``query`` built from bound values (never from input as syntax): each term
    is ``phraseto_tsquery`` of its folded words, joined by ``||`` (or), ``&&`` and ``!!``."""
    params: dict[str, str] = {}

    def term(words: tuple[str, ...]) -> str:
        name = f"search_t{len(params)}"
        params[name] = " ".join(words)
        return f"phraseto_tsquery(search_language(), search_fold(:{name}))"

    groups = ["(" + " || ".join(term(t.words) for t in g) + ")" for g in query.groups]
    groups += ["!!" + term(t.words) for t in query.excluded]
    return " && ".join(groups), params


def _matches_sql(dialect: str, query: Query) -> tuple[str, str, str, dict[str, Any]]:
    """SQL pieces for the user's matching messages: (FROM+WHERE, pk column, score, params).
    The WHERE ends open, so that pk bounds can be added."""
    if dialect == "sqlite":
        return (
            """FROM search_messages JOIN messages m ON m.pk = search_messages.rowid
               WHERE search_messages MATCH :search_match AND m.user_pk = :user_pk""",
            "search_messages.rowid",
            "-bm25(search_messages)",
            {"search_match": query.fts5()},
        )
    tsquery, params = _pg_tsquery(query)
    return (
        f"""FROM messages m, (SELECT {tsquery} AS q) q
            WHERE m.user_pk = :user_pk AND m.search_tsv @@ q.q""",
        "m.pk",
        "ts_rank(m.search_tsv, q.q)::float8",
        params,
    )


def _titles_sql(dialect: str, query: Query) -> tuple[str, dict[str, Any]]:
    """(kind, pk, score) of the user's live chats whose title matches."""
    if dialect == "sqlite":
        return (
            """SELECT 0 AS kind, search_titles.rowid AS pk, -bm25(search_titles) AS score
               FROM search_titles JOIN sessions s ON s.pk = search_titles.rowid
               WHERE search_titles MATCH :search_match AND s.user_pk = :user_pk
                 AND s.deleted_at IS NULL""",
            {"search_match": query.fts5()},
        )
    tsquery, params = _pg_tsquery(query)
    return (
        f"""SELECT 0 AS kind, s.pk AS pk, ts_rank(s.search_tsv, q.q)::float8 AS score
            FROM sessions s, (SELECT {tsquery} AS q) q
            WHERE s.user_pk = :user_pk AND s.deleted_at IS NULL AND s.search_tsv @@ q.q""",
        params,
    )


class _Window:
    """Ranking every match of a word that half the messages hold costs a score per match
    (100,000 bm25 scores: half a second). So hits are ranked within windows of the
    ``WINDOW`` newest matches: the best of the newest thousand first, then of the next
    thousand, and so on; a query with fewer matches is simply ranked. Titles rank with the
    first window. A window is the pk range ``[low, top)``; finding its ``low`` walks the
    user's matches newest first (FTS5 in rowid order; PostgreSQL a backward pk scan or GIN)."""

    def __init__(self, conn: Connection, query: Query, user_pk: int) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.matches, self.pk, self.score, params = _matches_sql(self.dialect, query)
        self.titles, title_params = _titles_sql(self.dialect, query)
        self.params = {**params, **title_params, "user_pk": user_pk}

    def low(self, top: int | None) -> int | None:
        """The pk of the WINDOW-th newest match below ``top``; None if there are fewer."""
        below = f" AND {self.pk} < :w_top" if top is not None else ""
        stmt = text(
            f"SELECT {self.pk} AS pk {self.matches}{below}"
            f" ORDER BY {self.pk} DESC LIMIT 1 OFFSET :w_offset"
        )
        found = self.conn.scalar(stmt, {**self.params, "w_top": top, "w_offset": WINDOW - 1})
        return None if found is None else int(found)

    def ranked(
        self, top: int | None, low: int | None, after: tuple[float, int, int] | None, n: int
    ) -> list[Any]:
        """Up to ``n`` hits of the window ``[low, top)``, best first, after the keyset ``after``."""
        bounds = (f" AND {self.pk} < :w_top" if top is not None else "") + (
            f" AND {self.pk} >= :w_low" if low is not None else ""
        )
        hits = f"SELECT 1 AS kind, {self.pk} AS pk, {self.score} AS score {self.matches}{bounds}"
        if top is None:
            hits += f" UNION ALL {self.titles}"
        where = ""
        params = {**self.params, "w_top": top, "w_low": low, "w_limit": n}
        if after is not None:
            params["c_score"], params["c_kind"], params["c_pk"] = after
            where = """WHERE score < :c_score OR (score = :c_score AND (kind > :c_kind
                       OR (kind = :c_kind AND pk > :c_pk)))"""
        stmt = text(
            f"SELECT kind, pk, score FROM ({hits}) hits {where}"
            " ORDER BY score DESC, kind, pk LIMIT :w_limit"
        )
        return list(self.conn.execute(stmt, params).all())


def _fingerprint(q: str) -> str:
    return hashlib.sha256(q.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _encode_cursor(q: str, top: int | None, score: float, kind: int, pk: int) -> str:
    raw = json.dumps([_fingerprint(q), top, score, kind, pk]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(q: str, cursor: str) -> tuple[int | None, tuple[float, int, int]]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        fingerprint, top, score, kind, pk = json.loads(base64.urlsafe_b64decode(padded))
        if fingerprint != _fingerprint(q) or kind not in (_TITLE, _MESSAGE):
            raise ValueError("another query's cursor")
        if not isinstance(score, float | int) or not 0 <= int(pk) < 2**63:
            raise ValueError("out of range")
        if top is not None and not 0 <= int(top) < 2**63:
            raise ValueError("out of range")
        return (None if top is None else int(top)), (float(score), int(kind), int(pk))
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError) as exc:
        raise Invalid(
            "cursor is not one this server gave out for this query", field="cursor"
        ) from exc


def search(
    conn: Connection, *, user_pk: int, q: str, limit: int, cursor: str | None = None
) -> dict[str, Any]:
    """Best first: bm25 (SQLite) or ts_rank (PostgreSQL), then titles before messages, then pk,
    within windows of the newest matches (``_Window``); ``next_cursor`` continues after the last
    hit of this page (a keyset: the window and the hit, not an offset)."""
    query = parse(q)
    window = _Window(conn, query, user_pk)
    top, after = _decode_cursor(q, cursor) if cursor else (None, None)
    ranked: list[tuple[int | None, Any]] = []
    while len(ranked) <= limit:
        low = window.low(top)
        ranked += [(top, row) for row in window.ranked(top, low, after, limit + 1 - len(ranked))]
        if low is None:
            break
        top, after = low, None
    page, more = ranked[:limit], len(ranked) > limit
    details = _details(conn, [(r.kind, r.pk) for _, r in page])
    words = query.folded_words()
    hits = []
    for _, row in page:
        found = details.get((row.kind, row.pk))
        if found is None:  # deleted between the two statements
            continue
        body, hit = found
        shown, spans = snippet(body, words)
        hits.append({**hit, "snippet": shown, "highlights": spans, "score": float(row.score)})
    next_cursor = None
    if more and page:
        last_top, last = page[-1]
        next_cursor = _encode_cursor(q, last_top, last.score, last.kind, last.pk)
    return {"hits": hits, "next_cursor": next_cursor}


def _details(
    conn: Connection, keys: list[tuple[int, int]]
) -> dict[tuple[int, int], tuple[str, dict[str, Any]]]:
    """The text and public fields of one page of hits, read after ranking (not for every match)."""
    found: dict[tuple[int, int], tuple[str, dict[str, Any]]] = {}
    message_pks = [pk for kind, pk in keys if kind == _MESSAGE]
    title_pks = [pk for kind, pk in keys if kind == _TITLE]
    if message_pks:
        rows = conn.execute(
            select(
                M.c.pk, M.c.id, M.c.role, M.c.seq, M.c.content, M.c.created_at, S.c.id, S.c.title
            )
            .join(S, S.c.pk == M.c.session_pk)
            .where(M.c.pk.in_(message_pks))
        )
        for r in rows:
            hit = {
                "session_id": r[6],
                "session_title": r[7],
                "message_id": r.id,
                "role": r.role,
                "seq": r.seq,
                "created_at": r.created_at,
            }
            found[(_MESSAGE, r.pk)] = (content_text(r.content), hit)
    if title_pks:
        rows = conn.execute(
            select(S.c.pk, S.c.id, S.c.title, S.c.created_at).where(S.c.pk.in_(title_pks))
        )
        for r in rows:
            hit = {
                "session_id": r.id,
                "session_title": r.title,
                "message_id": None,
                "role": None,
                "seq": None,
                "created_at": r.created_at,
            }
            found[(_TITLE, r.pk)] = (r.title, hit)
    return found


def content_text(content: Any) -> str:
    """The searchable text of a message: the same text the triggers index."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def sessions_matching(dialect: str, user_pk: int, q: str) -> TextualSelect | None:
    """The pks of the user's chats whose title matches ``q`` or that hold one of its
    ``LIST_MATCHES`` newest matching messages (for ``GET /api/sessions?q=``, newest chats
    first, asked at every keystroke: bounded like a search page), or None when ``q`` has no
    word to search for."""
    try:
        query = parse(q)
    except InvalidQuery:
        return None
    if dialect == "sqlite":
        sql = """SELECT pk FROM (SELECT m.session_pk AS pk FROM search_messages
                   JOIN messages m ON m.pk = search_messages.rowid
                   WHERE search_messages MATCH :search_match AND m.user_pk = :search_user
                   ORDER BY search_messages.rowid DESC LIMIT :search_list)
                 UNION SELECT rowid FROM search_titles WHERE search_titles MATCH :search_match"""
        params: dict[str, Any] = {"search_match": query.fts5()}
    else:
        tsquery, params = _pg_tsquery(query)
        sql = f"""SELECT pk FROM (SELECT m.session_pk AS pk FROM messages m,
                    (SELECT {tsquery} AS q) q
                    WHERE m.user_pk = :search_user AND m.search_tsv @@ q.q
                    ORDER BY m.pk DESC LIMIT :search_list) newest
                  UNION SELECT s.pk FROM sessions s, (SELECT {tsquery} AS q) q
                  WHERE s.user_pk = :search_user AND s.search_tsv @@ q.q"""
    clause: TextClause = text(sql).bindparams(
        *(bindparam(k, v) for k, v in params.items()),
        bindparam("search_user", user_pk),
        bindparam("search_list", LIST_MATCHES),
    )
    return clause.columns(pk=Integer)


def use_language(conn: Connection, *, language: str) -> bool:
    """Make ``language`` (a PostgreSQL text search configuration) the one words are stemmed
    with, re-indexing every row if it changed. SQLite's unicode61 has none. True if it changed."""
    if conn.dialect.name != "postgresql":
        return False
    # Workers start together: one changes the language, the others then find it current.
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LANGUAGE_LOCK_KEY})
    known = conn.scalar(
        text("SELECT cfgname FROM pg_ts_config WHERE cfgname = :name"), {"name": language}
    )
    if known is None:
        raise ValueError(f"no PostgreSQL text search configuration {language!r}")
    if conn.scalar(text("SELECT search_language()::text")) == language:
        return False
    conn.execute(
        text(
            "CREATE OR REPLACE FUNCTION search_language() RETURNS regconfig"
            " LANGUAGE sql IMMUTABLE PARALLEL SAFE"
            f" AS $$ SELECT '{language}'::regconfig $$"
        )
    )
    conn.execute(
        text(
            "UPDATE messages SET search_tsv = to_tsvector(search_language(),"
            " search_fold(search_text(content))) WHERE search_tsv IS NOT NULL"
        )
    )
    conn.execute(
        text("UPDATE sessions SET search_tsv = to_tsvector(search_language(), search_fold(title))")
    )
    return True
