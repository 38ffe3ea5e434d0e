"""Keyboard shortcuts (issue 9): new chat, search, focus the input, stop, copy the last reply,
and the `?` overlay that lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from support.fake_upstream import FakeUpstream

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat, Shot

pytestmark = pytest.mark.browser


def test_keyboard_shortcuts_and_the_question_mark_overlay(
    chat: Chat, fake: FakeUpstream, shot: Shot
) -> None:
    page = chat.page
    page.locator("body").click()
    page.keyboard.press("?")
    overlay = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(overlay).to_be_visible()
    for label in ("New chat", "Search chats", "Focus the message box", "Stop generating"):
        expect(overlay.get_by_text(label, exact=True)).to_be_visible()
    shot(page, "shortcuts")
    page.keyboard.press("Escape")
    expect(overlay).to_be_hidden()

    page.keyboard.press("Control+k")
    expect(page.get_by_label("Search chats")).to_be_focused()
    page.keyboard.press("Shift+Escape")
    expect(chat.input).to_be_focused()
    page.keyboard.press("?")  # typed into the message box, not a shortcut
    expect(overlay).to_be_hidden()
    expect(chat.input).to_have_value("?")

    fake.set(reply=" ".join(f"word{n}" for n in range(5000)), chunk_chars=10, token_interval_s=0.02)
    chat.input.fill("Tell me a long story")
    chat.input.press("Enter")
    expect(chat.messages("assistant")).to_contain_text("word2 ")
    page.keyboard.press("Escape")
    expect(chat.messages("assistant")).to_have_attribute("data-status", "cancelled")
    chat.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=chat.server.url)
    page.keyboard.press("Control+Shift+C")
    kept = chat.stored(chat.active_session_id())[1]["content"]
    page.evaluate(
        """async (wanted) => {
            for (let i = 0; i < 200; i += 1) {
                if ((await navigator.clipboard.readText()) === wanted) return;
                await new Promise((resolve) => setTimeout(resolve, 25));
            }
            throw new Error("the last reply is not on the clipboard");
        }""",
        kept,
    )

    session_id = chat.active_session_id()
    page.keyboard.press("Control+Shift+O")
    expect(page.locator("#chat-title")).to_have_text("New chat")
    assert page.url == chat.server.url + "/"
    expect(chat.input).to_be_focused()
    assert session_id != page.evaluate("localStorage.getItem('active_session_id')")
