"""G8 Bad input gets a clear error, never a 500 (SPEC 2, G8).

Hypothesis sends arbitrary JSON, arbitrary bytes, odd ids and odd query strings to a real server;
whatever it sends, the answer is below 500, every 4xx is RFC 9457 ``application/problem+json``
with the HTTP status and a stable ``code``, and no answer shows a traceback. Then the limits,
one by one: 413 (also for a chunked body that declares no length), 415, deep nesting, NUL
characters (422 on every database, although PostgreSQL could not even store them), 429 with
``Retry-After``.

Bodies are encoded here with ``json.dumps`` (ASCII escapes), so that strings a client could not
encode as UTF-8, like lone surrogates, still reach the server as valid JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from chatkeep.settings import Settings
from support.factories import make_accounts_sync, new_id
from support.server import ServerThread

FUZZ = settings(
    # No explain phase: its tracing trips CPython 3.11's "AST constructor recursion depth
    # mismatch" after a deep recursion, which hides the failing example it should explain.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROBLEM_JSON = "application/problem+json"


def assert_clear_answer(response: httpx.Response, sent: bytes | None = None) -> None:
    """Never a server error; every client error a problem+json with its status and a code."""
    where = f"{response.request.method} {str(response.request.url)[:200]}"
    if sent:
        where += f" with {sent[:300]!r}"
    text = response.text
    assert response.status_code < 500, f"{where}: {response.status_code} {text[:500]}"
    assert "Traceback" not in text and 'File "' not in text, f"{where}: {text[:500]}"
    if response.status_code >= 400:
        assert response.headers.get("content-type") == PROBLEM_JSON, f"{where}: {text[:300]}"
        problem = response.json()
        assert type(problem.get("status")) is int, problem
        assert problem["status"] == response.status_code, problem
        assert isinstance(problem.get("code"), str) and problem["code"], problem


@dataclass
class Live:
    """A server in this process, alice's client, and a session of hers with one message."""

    client: httpx.Client
    session_id: str
    message_id: str

    def send(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        content: bytes | None = None,
        content_type: str | None = "application/json",
    ) -> httpx.Response:
        if body is not None:
            content = json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content_type is not None else {}
        response = self.client.request(method, url, content=content, headers=headers)
        assert_clear_answer(response, content)
        return response


@contextmanager
def serve(settings: Settings) -> Iterator[Live]:
    """alice's account, a server on ``settings``, and a session with one message in it."""
    alice = make_accounts_sync(settings.resolved_database_url, "alice")["alice"]
    server = ServerThread(settings).start()
    try:
        with httpx.Client(base_url=server.url, headers=alice.headers, timeout=30) as client:
            sid, mid = new_id(), new_id()
            created = client.put(f"/api/sessions/{sid}", json={"title": "fuzzed"})
            message = {"role": "user", "content": "hello"}
            appended = client.put(f"/api/sessions/{sid}/messages/{mid}", json=message)
            assert (created.status_code, appended.status_code) == (201, 201)
            yield Live(client, sid, mid)
    finally:
        server.stop()


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with serve(settings) as running:
        yield running


# ---- strategies -------------------------------------------------------------------------------

# Every code point, lone surrogates included, and the strings most likely to break something.
any_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "\udfff x", "💬" * 3, " " * 3, "null"]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=20,
)


def sometimes(*good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Half of the time a value of the right kind, else any JSON at all."""
    return st.one_of(st.one_of(*good), json_values)


def part() -> st.SearchStrategy[Any]:
    url = st.one_of(
        any_text,
        st.sampled_from(
            [
                "data:image/png;base64,iVBORw0KGgo=",
                "data:image/png;base64,iVBORw0KGgo",
                "data:image/png;base64,!!!",
                "data:image/svg+xml;base64,PHN2Zz4=",
                "data:image/png,iVBORw0KGgo=",
                "data:,",
                "/api/blobs/" + "0" * 64,
                "/api/blobs/../../etc/passwd",
                "https://example.com/cat.png",
                "javascript:alert(1)",
            ]
        ),
    )
    image_url = st.fixed_dictionaries({"url": sometimes(url)}, optional={"detail": json_values})
    return sometimes(
        st.fixed_dictionaries({"type": st.just("text"), "text": sometimes(any_text)}),
        st.fixed_dictionaries({"type": st.just("image_url"), "image_url": sometimes(image_url)}),
    )


ids = st.uuids().map(str)
dicts = st.dictionaries(any_text, json_values, max_size=4)
message_body = st.fixed_dictionaries(
    {
        "role": sometimes(st.sampled_from(["user", "assistant", "system"])),
        "content": sometimes(any_text, st.lists(part(), min_size=1, max_size=4)),
    },
    optional={
        "parent_id": sometimes(st.none(), ids),
        "model": sometimes(any_text),
        "status": sometimes(st.sampled_from(["complete", "error", "cancelled", "streaming"])),
        "error": sometimes(st.none(), dicts),
        "usage": sometimes(st.none(), dicts),
        "extra": json_values,
    },
)
session_body = st.fixed_dictionaries(
    {},
    optional={
        "title": sometimes(st.none(), any_text),
        "model": sometimes(st.none(), any_text),
        "pinned": sometimes(st.booleans()),
        "archived": sometimes(st.booleans()),
        "active_leaf_id": sometimes(st.none(), ids),
        "extra": json_values,
    },
)
batch_body = st.fixed_dictionaries(
    {
        "messages": sometimes(
            st.lists(
                st.tuples(ids, message_body).map(lambda pair: {"id": pair[0], **pair[1]}),
                max_size=3,
            )
        )
    }
)
# (method, path) and a body for it: mostly of the right shape, so that the deep validation and
# the store are reached, else any JSON at all, so that the parsing is too.
SESSION_ROUTES = [
    ("PUT", "/api/sessions/{new}"),
    ("PUT", "/api/sessions/{sid}"),
    ("PATCH", "/api/sessions/{sid}"),
]
MESSAGE_ROUTES = [
    ("PUT", "/api/sessions/{sid}/messages/{new}"),
    ("PUT", "/api/sessions/{sid}/messages/{mid}"),
]
BATCH_ROUTES = [("POST", "/api/sessions/{sid}/messages:batch")]
BODY_ROUTES = SESSION_ROUTES + MESSAGE_ROUTES + BATCH_ROUTES
requests = st.one_of(
    st.tuples(st.sampled_from(SESSION_ROUTES), sometimes(session_body)),
    st.tuples(st.sampled_from(MESSAGE_ROUTES), sometimes(message_body)),
    st.tuples(st.sampled_from(BATCH_ROUTES), sometimes(batch_body)),
)


def url_of(live: Live, template: str) -> str:
    return template.format(sid=live.session_id, mid=live.message_id, new=new_id())


# ---- properties -------------------------------------------------------------------------------

MESSAGE = ("PUT", "/api/sessions/{sid}/messages/{new}")


@FUZZ
@given(request=requests)
@example(request=(MESSAGE, {"role": "user", "content": "\ud800"}))
@example(request=(MESSAGE, {"role": "user", "content": "x", "error": {"\udc00": 1}}))
@example(request=(("PUT", "/api/sessions/{new}"), {"title": "a\x00b"}))
@example(request=(("PATCH", "/api/sessions/{sid}"), {"model": "\x00"}))
def test_arbitrary_json_bodies_get_clear_answers(
    live: Live, request: tuple[tuple[str, str], Any]
) -> None:
    (method, template), body = request
    live.send(method, url_of(live, template), body=body)


content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-16",
            "application/problem+json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/octet-stream",
            "",
        ]
    ),
    # h11 refuses to send a header value with whitespace at either end.
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.strip),
)


@FUZZ
@given(
    route=st.sampled_from(BODY_ROUTES),
    data=st.one_of(
        st.binary(max_size=300),
        st.sampled_from([b"", b"{", b"\xff\xfe{\x00}\x00", b'{"title": 1e999}', b"[]" * 100]),
    ),
    content_type=content_types,
)
def test_arbitrary_bytes_get_clear_answers(
    live: Live, route: tuple[str, str], data: bytes, content_type: str
) -> None:
    method, template = route
    live.send(method, url_of(live, template), content=data, content_type=content_type)


odd_ids = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=60),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=500, max_size=1500),
    st.uuids().map(str).map(str.upper),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.sampled_from(["..", ".", "%", "0", "-1", "null", "messages:batch", "a/b", "\x00"]),
)
ID_ROUTES = [
    ("GET", "/api/sessions/{id}", None),
    ("PUT", "/api/sessions/{id}", {"title": "odd"}),
    ("PATCH", "/api/sessions/{id}", {"title": "odd"}),
    ("DELETE", "/api/sessions/{id}", None),
    ("GET", "/api/sessions/{id}/messages", None),
    ("PUT", "/api/sessions/{id}/messages/{mid}", {"role": "user", "content": "odd"}),
    ("PUT", "/api/sessions/{sid}/messages/{id}", {"role": "user", "content": "odd"}),
    ("POST", "/api/sessions/{id}/messages:batch", {"messages": []}),
    ("GET", "/api/sessions/{sid}/messages/{id}/stream", None),
    ("POST", "/api/sessions/{sid}/messages/{id}/cancel", None),
    ("GET", "/api/blobs/{id}", None),
]


@FUZZ
@given(route=st.sampled_from(ID_ROUTES), odd=odd_ids)
def test_odd_ids_in_paths_get_clear_answers(
    live: Live, route: tuple[str, str, Any], odd: str
) -> None:
    method, template, body = route
    url = template.format(id=quote(odd, safe=""), sid=live.session_id, mid=new_id())
    live.send(method, url, body=body)


query_values = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(["", "0", "-1", "1e3", "1.5", "true", "null", "\x00", "9" * 30, "%FF"]),
)


@FUZZ
@given(
    path=st.sampled_from(["/api/sessions", "/api/sessions/{sid}/messages"]),
    params=st.dictionaries(
        st.sampled_from(["limit", "cursor", "after_seq", "q", "archived", "pinned"]),
        query_values,
        max_size=4,
    ),
)
@example(path="/api/sessions/{sid}/messages", params={"after_seq": "9" * 30})
@example(path="/api/sessions", params={"q": "\x00"})
def test_odd_query_parameters_get_clear_answers(
    live: Live, path: str, params: dict[str, str]
) -> None:
    query = "&".join(f"{quote(k)}={quote(v, safe='%')}" for k, v in params.items())
    live.send("GET", f"{path.format(sid=live.session_id)}?{query}", content_type=None)


# ---- the limits, one by one -------------------------------------------------------------------


def test_chunked_body_over_the_limit_is_413(settings: Settings) -> None:
    """A body sent without Content-Length is counted as it arrives: past ``max_body_bytes``
    the answer is 413, as for a declared length, not a parse error."""
    small = settings.model_copy(update={"max_body_bytes": 1024})
    with serve(small) as live:

        def chunks() -> Iterator[bytes]:
            yield b'{"title": "'
            for _ in range(8):
                yield b"x" * 512
            yield b'"}'

        chunked = live.client.put(
            f"/api/sessions/{new_id()}",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in chunked.request.headers
        assert_clear_answer(chunked)
        assert (chunked.status_code, chunked.json()["code"]) == (413, "payload_too_large")

        declared = live.send("PUT", f"/api/sessions/{new_id()}", body={"title": "x" * 2000})
        assert (declared.status_code, declared.json()["code"]) == (413, "payload_too_large")
        # Under the limit, the same request works.
        assert live.send("PUT", f"/api/sessions/{new_id()}", body={"title": "x"}).status_code == 201


def test_body_that_is_not_json_is_415(live: Live) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        response = live.send(
            "PUT", f"/api/sessions/{new_id()}", content=b"{}", content_type=content_type
        )
        assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize("depth", [100, 300, 1000, 10_000])
def test_deeply_nested_json_is_never_a_server_error(live: Live, depth: int) -> None:
    """Valid JSON nested ``depth`` deep, as the whole body and inside a field that takes any
    JSON (``usage``): stored or refused, never a 500 from a recursion limit; refused with a
    4xx at 10,000 levels."""
    nested = "[" * depth + "]" * depth
    whole = live.send("PUT", f"/api/sessions/{new_id()}", content=nested.encode())
    assert 400 <= whole.status_code < 500  # a list is not a session's fields at any depth
    inside = f'{{"role": "user", "content": "x", "usage": {{"deep": {nested}}}}}'
    mid = new_id()
    answer = live.send(
        "PUT", f"/api/sessions/{live.session_id}/messages/{mid}", content=inside.encode()
    )
    if depth >= 10_000:
        assert 400 <= answer.status_code < 500
    if answer.status_code == 201:  # taken: then it reads back as it was sent
        synced = live.send("GET", f"/api/sessions/{live.session_id}/messages", content_type=None)
        (stored,) = [m for m in synced.json()["messages"] if m["id"] == mid]
        assert stored["usage"] == json.loads(inside)["usage"]


def test_nul_characters_in_text_are_422(live: Live) -> None:
    """PostgreSQL cannot store NUL in text, so no database accepts it: 422 everywhere."""
    sid = live.session_id
    cases: list[tuple[str, str, Any]] = [
        ("PUT", f"/api/sessions/{new_id()}", {"title": "a\x00b"}),
        ("PUT", f"/api/sessions/{new_id()}", {"model": "demo\x00"}),
        ("PATCH", f"/api/sessions/{sid}", {"title": "\x00"}),
        ("PUT", f"/api/sessions/{sid}/messages/{new_id()}", {"role": "user", "content": "a\x00"}),
        (
            "PUT",
            f"/api/sessions/{sid}/messages/{new_id()}",
            {"role": "user", "content": [{"type": "text", "text": "\x00"}]},
        ),
        (
            "PUT",
            f"/api/sessions/{sid}/messages/{new_id()}",
            {"role": "assistant", "content": "ok", "model": "de\x00mo"},
        ),
        (
            "POST",
            f"/api/sessions/{sid}/messages:batch",
            {"messages": [{"id": new_id(), "role": "user", "content": "\x00"}]},
        ),
    ]
    for method, url, body in cases:
        response = live.send(method, url, body=body)
        assert response.status_code in (409, 422), (method, url, body, response.text)
        if response.status_code == 409:  # a batch answers per item
            assert response.json()["results"][0]["status"] == 422, response.text
    search = live.send("GET", "/api/sessions?q=%00", content_type=None)
    assert search.status_code == 422, search.text
    assert live.client.get(f"/api/sessions/{sid}").json()["title"] == "fuzzed"


def test_rate_limit_is_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_minute": 5})
    with serve(limited) as live:  # serve itself spends 2 of the 5
        answers = [live.send("GET", "/api/sessions", content_type=None) for _ in range(5)]
    statuses = [a.status_code for a in answers]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429], statuses
    refused = answers[-1]
    assert refused.json()["code"] == "rate_limited"
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60, retry_after
