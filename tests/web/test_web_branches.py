"""Edit a sent message, regenerate a reply, switch versions with ‹ 1/2 ›, and continue a reply
that stopped (issue 9), all on the API's message tree (SPEC 3-4): what the page shows is the
session's active path, and the server stores each turn once."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Request, expect

from support.fake_upstream import FakeUpstream

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat, Shot

pytestmark = pytest.mark.browser


def turn_bodies(chat: Chat) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []

    def seen(request: Request) -> None:
        if request.url.endswith("/turns"):
            bodies.append(json.loads(request.post_data or "{}"))

    chat.page.on("request", seen)
    return bodies


def test_edit_a_sent_message_makes_a_branch_and_the_switcher_moves_between_them(
    chat: Chat, shot: Shot
) -> None:
    chat.send("First")
    chat.wait_replies(1)
    chat.send("Second")
    chat.wait_replies(2)
    first = chat.messages("user").first
    first.get_by_role("button", name="Edit").click()
    editor = first.get_by_label("Edit message")
    expect(editor).to_be_focused()
    editor.fill("First, edited")
    shot(chat.page, "edit")
    first.get_by_role("button", name="Save and send").click()
    chat.wait_replies(1)
    expect(chat.texts("user")).to_have_text(["First, edited"])
    expect(chat.texts("assistant")).to_have_text(["Echo: First, edited"])
    expect(chat.messages("user").locator(".branch-label")).to_have_text("2/2")
    shot(chat.page, "branches")

    chat.messages("user").get_by_role("button", name="Previous version").click()
    expect(chat.texts("user")).to_have_text(["First", "Second"])
    expect(chat.texts("assistant")).to_have_text(["Echo: First", "Echo: Second"])
    expect(chat.messages("user").first.locator(".branch-label")).to_have_text("1/2")
    session_id = chat.active_session_id()
    session = chat.api.get(f"/api/sessions/{session_id}").json()
    assert [m["content"] for m in session["messages"]][-1] == "Echo: Second"
    chat.page.reload()  # the server keeps the chosen version
    expect(chat.texts("user")).to_have_text(["First", "Second"])
    expect(chat.messages("user").first.locator(".branch-label")).to_have_text("1/2")
    chat.messages("user").first.get_by_role("button", name="Next version").click()
    expect(chat.texts("user")).to_have_text(["First, edited"])
    stored = chat.stored(session_id)
    assert [m["content"] for m in stored if m["role"] == "user"] == [
        "First",
        "Second",
        "First, edited",
    ]


def test_regenerate_makes_a_sibling_reply_to_the_same_stored_message(
    chat: Chat, fake: FakeUpstream
) -> None:
    fake.set(reply="Answer A")
    chat.send("Question")
    chat.wait_replies(1)
    fake.set(reply="Answer B")
    bodies = turn_bodies(chat)
    chat.messages("assistant").get_by_role("button", name="Regenerate").click()
    expect(chat.texts("assistant")).to_have_text(["Answer B"])
    chat.wait_replies(1)
    expect(chat.messages("assistant").locator(".branch-label")).to_have_text("2/2")
    chat.messages("assistant").get_by_role("button", name="Previous version").click()
    expect(chat.texts("assistant")).to_have_text(["Answer A"])
    expect(chat.texts("user")).to_have_text(["Question"])

    stored = chat.stored(chat.active_session_id())
    user = [m for m in stored if m["role"] == "user"]
    replies = [m for m in stored if m["role"] == "assistant"]
    assert len(user) == 1, "a regeneration stores no second user message"
    assert [r["content"] for r in replies] == ["Answer A", "Answer B"]
    assert {r["parent_id"] for r in replies} == {user[0]["id"]}
    assert len(bodies) == 1 and bodies[0]["message"]["id"] == user[0]["id"]


def test_regenerate_a_reply_to_an_edited_message(chat: Chat, fake: FakeUpstream) -> None:
    """An edited message was sent with an explicit parent_id: its regeneration must repeat
    that body to be a replay (the page retries once with the stored parent)."""
    chat.send("One")
    chat.wait_replies(1)
    chat.messages("user").get_by_role("button", name="Edit").click()
    chat.messages("user").get_by_label("Edit message").fill("Two")
    chat.messages("user").get_by_role("button", name="Save and send").click()
    chat.wait_replies(1)
    fake.set(reply="Again")
    chat.messages("assistant").get_by_role("button", name="Regenerate").click()
    expect(chat.texts("assistant")).to_have_text(["Again"])
    chat.wait_replies(1)
    expect(chat.page.get_by_title("Failed to save")).to_have_count(0)
    users = [m["content"] for m in chat.stored(chat.active_session_id()) if m["role"] == "user"]
    assert users == ["One", "Two"]


def test_continue_a_stopped_reply_sends_a_continue_turn_after_it(
    chat: Chat, fake: FakeUpstream
) -> None:
    fake.set(reply=" ".join(f"word{n}" for n in range(5000)), chunk_chars=10, token_interval_s=0.02)
    chat.send("Tell me everything")
    reply = chat.messages("assistant")
    expect(reply).to_contain_text("word2 ")
    chat.page.get_by_role("button", name="Stop").click()
    expect(reply).to_have_attribute("data-status", "cancelled")
    fake.set(reply="and the rest.")
    bodies = turn_bodies(chat)
    reply.get_by_role("button", name="Continue").click()
    chat.wait_replies(1)
    expect(chat.texts("user")).to_have_text(["Tell me everything", "Continue"])
    expect(chat.texts("assistant").last).to_have_text("and the rest.")
    expect(chat.page.get_by_role("button", name="Continue")).to_have_count(0)
    stored = chat.stored(chat.active_session_id())
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"),
        ("assistant", "cancelled"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert stored[2]["parent_id"] == stored[1]["id"]  # it follows the stopped reply
    assert bodies[0]["message"]["content"] == "Continue"
    assert "parent_id" not in bodies[0]["message"]
