"""Search in the sidebar (issue 10): matching chats with a snippet of the hit, its words marked;
opening a hit scrolls to that message in a long chat and highlights it, and switches the chat to
the hit's branch when the message is not on the active one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import expect

from support.factories import new_id

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat

pytestmark = pytest.mark.browser


def batch(api: httpx.Client, sid: str, items: list[dict[str, object]]) -> list[str]:
    """Append ``items`` in one batch; their ids."""
    for item in items:
        item.setdefault("id", new_id())
    response = api.post(f"/api/sessions/{sid}/messages:batch", json={"messages": items})
    assert response.status_code == 201, response.text[:300]
    return [str(item["id"]) for item in items]


def long_chat(api: httpx.Client, title: str, count: int, needle_at: int, needle: str) -> str:
    """A chat of ``count`` messages; message ``needle_at`` (0-based) mentions ``needle``."""
    sid = new_id()
    assert api.put(f"/api/sessions/{sid}", json={"title": title}).status_code == 201
    items: list[dict[str, object]] = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"Message {i}: " + ("something about " + needle if i == needle_at else "")
            + " filler text to make the chat long. " * 4,
        }
        for i in range(count)
    ]  # fmt: skip
    return batch(api, sid, items)[needle_at]


def search(chat: Chat, query: str) -> None:
    chat.page.get_by_placeholder("Search chats").fill(query)


def test_a_hit_in_a_long_chat_opens_scrolled_to_and_highlighted(chat: Chat) -> None:
    hit = long_chat(chat.api, "A long one", 200, 37, "<b>Zanzibar</b> & spices")
    long_chat(chat.api, "Unrelated", 4, 1, "nothing")
    chat.open()
    search(chat, "zanzibar spices")
    item = chat.page.locator(".session-item")
    expect(item).to_have_count(1)
    expect(item.locator(".session-title")).to_have_text("A long one")
    snippet = item.locator(".search-snippet")
    expect(snippet).to_contain_text("<b>Zanzibar</b> & spices")  # text, not markup
    expect(snippet.locator("mark")).to_have_text(["Zanzibar", "spices"])
    assert snippet.locator("b").count() == 0

    item.locator(".session-link").click()
    message = chat.page.locator(f'#messages [data-message-id="{hit}"]')
    expect(message).to_have_attribute("data-search-hit", "1")
    expect(message).to_be_in_viewport()
    expect(chat.messages()).to_have_count(200)


def test_a_hit_on_another_branch_switches_the_chat_to_it(chat: Chat) -> None:
    sid = new_id()
    assert chat.api.put(f"/api/sessions/{sid}", json={"title": "Branches"}).status_code == 201
    root, answer, old_question, old_answer = batch(
        chat.api,
        sid,
        [
            {"role": "user", "content": "Plan a trip"},
            {"role": "assistant", "content": "Where to?"},
            {"role": "user", "content": "Somewhere like Madagascar"},
            {"role": "assistant", "content": "Lemurs, then."},
        ],
    )
    # An edit of the second question: a new branch, which becomes the active one.
    [new_question] = batch(
        chat.api, sid, [{"role": "user", "content": "Somewhere cold", "parent_id": answer}]
    )
    assert chat.api.get(f"/api/sessions/{sid}").json()["active_leaf_id"] == new_question
    chat.open(f"/c/{sid}")
    expect(chat.texts("user")).to_have_text(["Plan a trip", "Somewhere cold"])

    search(chat, "madagascar")
    link = chat.page.locator(".session-item .session-link")
    expect(link.locator(".search-snippet mark")).to_have_text(["Madagascar"])
    link.click()
    message = chat.page.locator(f'#messages [data-message-id="{old_question}"]')
    expect(message).to_have_attribute("data-search-hit", "1")
    expect(chat.texts("user")).to_have_text(["Plan a trip", "Somewhere like Madagascar"])
    expect(chat.texts("assistant")).to_have_text(["Where to?", "Lemurs, then."])
    assert chat.api.get(f"/api/sessions/{sid}").json()["active_leaf_id"] == old_answer
    assert root
