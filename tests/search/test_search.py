"""Full-text search (issue 10) over real HTTP, on SQLite (FTS5) and PostgreSQL (tsvector): every
word must match, "phrases", -exclusions, OR; case and accents ignored; only the caller's live
chats (G7, G5); ranked, one hit per message, paged; a bad query is a 422, never a 500 (G8)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chatkeep.store import search as store_search
from support.factories import new_id
from support.stack import Stack


async def chat(api: httpx.AsyncClient, title: str, *contents: Any) -> tuple[str, list[str]]:
    """A chat with the given messages (user, assistant, user, ...); its id and message ids."""
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={"title": title})).status_code == 201
    ids = []
    for index, content in enumerate(contents):
        mid = new_id()
        body = {"role": "user" if index % 2 == 0 else "assistant", "content": content}
        response = await api.put(f"/api/sessions/{sid}/messages/{mid}", json=body)
        assert response.status_code == 201, response.text
        ids.append(mid)
    return sid, ids


async def search(api: httpx.AsyncClient, q: str, **params: Any) -> dict[str, Any]:
    response = await api.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def found(api: httpx.AsyncClient, q: str) -> set[str | None]:
    """The message ids (None for a title hit) that ``q`` finds."""
    return {hit["message_id"] for hit in (await search(api, q, limit=100))["hits"]}


async def test_every_word_phrases_exclusions_and_or(api: httpx.AsyncClient) -> None:
    _, (fox, dog, cat) = await chat(
        api,
        "animals",
        "the quick brown fox jumps",
        "a lazy dog sleeps near the brown fence",
        "one black cat, quick as a fox",
    )
    assert await found(api, "quick fox") == {fox, cat}
    assert await found(api, "brown") == {fox, dog}
    assert await found(api, '"brown fox"') == {fox}
    assert await found(api, '"quick brown"') == {fox}
    assert await found(api, '"fox quick"') == set()
    assert await found(api, "quick -cat") == {fox}
    assert await found(api, 'brown -"lazy dog"') == {fox}
    assert await found(api, "dog or cat") == {dog, cat}
    assert await found(api, "dog OR cat sleeps") == {dog}
    assert await found(api, "animals") == {None}  # the title: one hit, no message


async def test_case_and_accents_are_ignored(api: httpx.AsyncClient) -> None:
    _, (cafe, ueber, decomposed) = await chat(
        api, "accents", "Un CAFÉ à Zürich", "über alles ÉCOLE", "cafe\u0301 de\u0301composé"
    )
    assert await found(api, "cafe zurich") == {cafe}
    assert await found(api, "Café ZÜRICH") == {cafe}
    assert await found(api, "ecole UBER") == {ueber}
    assert await found(api, "décomposé") == {decomposed}
    assert await found(api, "café") == {cafe, decomposed}


def png() -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    data += chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def test_a_word_in_an_image_messages_text_part_is_found(api: httpx.AsyncClient) -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": png()}},
        {"type": "text", "text": "what is this zanzibar beach?"},
    ]
    sid, (mid,) = await chat(api, "photo", parts)
    [hit] = (await search(api, "zanzibar"))["hits"]
    assert (hit["session_id"], hit["message_id"], hit["role"], hit["seq"]) == (sid, mid, "user", 1)
    assert hit["snippet"] == "what is this zanzibar beach?"
    assert await found(api, "base64 OR png OR blobs") == set()  # image bytes and urls are not text


async def test_snippets_are_plain_text_with_highlight_offsets(api: httpx.AsyncClient) -> None:
    long_text = "filler " * 100 + "<b>Needle</b> & needles in the hay " + "tail " * 100
    await chat(api, "hay", long_text)
    [hit] = (await search(api, "needle"))["hits"]
    snippet = hit["snippet"]
    assert "<b>Needle</b>" in snippet and snippet.startswith("…") and snippet.endswith("…")
    assert [snippet[a:b] for a, b in hit["highlights"]] == ["Needle"]
    assert len(snippet) < 300


async def test_another_users_chat_is_never_returned(stack: Stack, api: httpx.AsyncClient) -> None:
    """G7: bob's chat with the same words, and the same title, is not alice's hit."""
    async with stack.client(stack.bob) as bob:
        await chat(bob, "secret plans", "the secret plans of bob")
        _, (mine,) = await chat(api, "my notes", "nothing to see")
        assert await found(api, "secret") == set()
        assert await found(api, "plans OR nothing") == {mine}
        listed = (await api.get("/api/sessions", params={"q": "secret"})).json()["sessions"]
        assert listed == []


async def test_deleted_chat_is_never_returned(api: httpx.AsyncClient) -> None:
    """G5: a deleted chat's messages and title leave the index with its tombstone."""
    sid, _ = await chat(api, "doomed zebra", "zebra crossing", "more zebra")
    kept, (kept_mid,) = await chat(api, "kept", "a zebra that stays")
    assert len(await found(api, "zebra")) == 4
    assert (await api.delete(f"/api/sessions/{sid}")).status_code == 204
    assert await found(api, "zebra") == {kept_mid}
    listed = (await api.get("/api/sessions", params={"q": "zebra"})).json()["sessions"]
    assert [s["id"] for s in listed] == [kept]


async def test_renamed_chat_is_found_by_its_new_title(api: httpx.AsyncClient) -> None:
    sid, _ = await chat(api, "Untitled", "hello")
    patched = await api.patch(f"/api/sessions/{sid}", json={"title": "Trip to Kilimanjaro"})
    assert patched.status_code == 200
    [hit] = (await search(api, "kilimanjaro"))["hits"]
    assert (hit["session_id"], hit["session_title"], hit["message_id"]) == (
        sid,
        "Trip to Kilimanjaro",
        None,
    )
    assert [hit["snippet"][a:b] for a, b in hit["highlights"]] == ["Kilimanjaro"]
    assert await found(api, "untitled") == set()


async def test_sessions_q_matches_titles_and_content(api: httpx.AsyncClient) -> None:
    """``GET /api/sessions?q=`` finds a chat whose messages mention the word (issue 10), and
    still a title by the part typed so far."""
    by_content, _ = await chat(api, "holiday", "we flew to lamu in may")
    by_title, _ = await chat(api, "Lamu photos", "pictures")
    await chat(api, "other", "unrelated")

    async def listed(q: str) -> set[str]:
        response = await api.get("/api/sessions", params={"q": q})
        assert response.status_code == 200, response.text
        return {s["id"] for s in response.json()["sessions"]}

    assert await listed("lamu") == {by_content, by_title}
    assert await listed("LAM") == {by_title}
    assert await listed("flew -may") == set()
    assert await listed("-") == set()


async def test_ranked_one_hit_per_message_and_paged(api: httpx.AsyncClient) -> None:
    """The message that says the word most ranks first; a page ends with a cursor that
    continues without losing or repeating a hit."""
    _, ids = await chat(api, "t", *[f"rank word {i}" for i in range(23)], "rank rank rank rank")
    first = await search(api, "rank", limit=10)
    assert first["hits"][0]["message_id"] == ids[-1]
    seen = [h["message_id"] for h in first["hits"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await search(api, "rank", limit=10, cursor=cursor)
        seen += [h["message_id"] for h in page["hits"]]
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(ids) and len(seen) == len(ids)
    scores = [h["score"] for h in first["hits"]]
    assert scores == sorted(scores, reverse=True)

    other_query = await api.get("/api/search", params={"q": "word", "cursor": first["next_cursor"]})
    assert (other_query.status_code, other_query.json()["code"]) == (422, "validation_error")
    garbage = await api.get("/api/search", params={"q": "rank", "cursor": "!!"})
    assert garbage.status_code == 422


async def test_empty_or_operator_only_queries_are_invalid_query(api: httpx.AsyncClient) -> None:
    for q in ["", "   ", "-", '""', "or", "OR OR", "-word", '-"a phrase"', ":*()", "NEAR"]:
        response = await api.get("/api/search", params={"q": q})
        if q == "NEAR":  # a word like any other, not FTS5 syntax
            assert response.status_code == 200, response.text
            continue
        assert response.status_code == 422, (q, response.text)
        assert response.json()["code"] == "invalid_query"
    assert (await api.get("/api/search")).json()["code"] == "invalid_query"
    assert (await api.get("/api/search", params={"q": "x", "limit": 101})).status_code == 422


fts_syntax = st.sampled_from(
    ['"', "'", ":", "*", "^", "(", ")", "-", "+", "NEAR", "NEAR(a b)", "AND", "NOT", "OR", "{",
     "}", "body:", "title:", "\\", "&", "|", "!", "<->", ":*", "\x00", "%FF", " ", "é", "ß"]
)  # fmt: skip
words = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)  # URLs carry no surrogates
hostile = st.lists(st.one_of(fts_syntax, words), max_size=12).map("".join)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(q=hostile)
@example(q='"unterminated')
@example(q="NEAR(a b, 2)")
@example(q="title: body: *")
@example(q="a" * 500)
@example(q=" ".join(f"w{i}" for i in range(40)))
def test_hostile_queries_never_500(stack: Stack, q: str) -> None:
    """G8: whatever the query, the answer is 200 or a 422 problem, never a 500."""
    with httpx.Client(base_url=stack.url, headers=stack.alice.headers, timeout=30) as client:
        for path in ("/api/search", "/api/sessions"):
            response = client.get(path, params={"q": q})
            assert response.status_code in (200, 422), (path, q, response.text)
            if response.status_code == 422:
                assert response.headers["content-type"] == "application/problem+json"
                assert json.loads(response.text)["code"] in ("invalid_query", "validation_error")


async def test_many_matches_are_ranked_within_windows_of_the_newest(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word in very many messages is ranked within windows of the newest matches (so the
    cost of a page is bounded), and paging still visits every hit once."""
    monkeypatch.setattr(store_search, "WINDOW", 5)
    _, ids = await chat(api, "t", *[("tide " * (1 + i % 3)) + f"n{i}" for i in range(23)])
    first = await search(api, "tide", limit=4)
    assert {h["message_id"] for h in first["hits"]} <= set(ids[-5:])
    scores = [h["score"] for h in first["hits"]]
    assert scores == sorted(scores, reverse=True)
    seen = [h["message_id"] for h in first["hits"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await search(api, "tide", limit=4, cursor=cursor)
        seen += [h["message_id"] for h in page["hits"]]
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(ids) and len(seen) == len(ids)
