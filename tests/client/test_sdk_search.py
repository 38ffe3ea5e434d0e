"""``ck.search`` and ``chatkeep search`` against the real endpoint (CONTRACTS.md): hits across
the caller's chats only, auto-paging on ``next_cursor``, highlights inside the snippet."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sdkkit import SdkStack

import chatkeep


def test_search_pages_through_every_hit_of_the_caller_only(ck: Any, sdk_stack: SdkStack) -> None:
    word = f"zebra{uuid.uuid4().hex[:8]}"
    s = ck.sessions.create(title="Animals")
    made = [
        ck.messages.append(s.id, role="user", content=f"the {word} number {n}").id
        for n in range(25)
    ]
    with chatkeep.Client(base_url=sdk_stack.url, api_key=sdk_stack.bob.key) as bob:
        theirs = bob.sessions.create(title="Bob's")
        bob.messages.append(theirs.id, role="user", content=f"bob's {word}")
    hits = list(ck.search(word))  # 25 hits: two pages of the default 20
    assert sorted(h.message_id for h in hits) == sorted(made)
    assert {h.session_id for h in hits} == {s.id}
    for hit in hits:
        assert hit.role == "user" and hit.session_title == "Animals"
        assert any(hit.snippet[a:b].lower() == word for a, b in hit.highlights)
    assert len(list(ck.search(word, limit=7))) == 7


def test_an_empty_query_is_a_clear_error(ck: Any) -> None:
    with pytest.raises(chatkeep.UnprocessableEntity) as caught:
        list(ck.search("   "))
    assert caught.value.code == "invalid_query"
