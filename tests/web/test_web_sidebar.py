"""The sidebar: new chat, rename, pin, archive (and the archived view), delete, search, and
keyset "Load more"; each action checked against what the server stored."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat

pytestmark = pytest.mark.browser


def act(chat: Chat, title: str, action: str) -> None:
    chat.page.get_by_role("button", name=f"Actions for {title}").click()
    chat.page.get_by_role("menuitem", name=action).click()


def test_new_chat_rename_pin_archive_delete(chat: Chat) -> None:
    chat.send("Alpha")
    chat.wait_replies(1)
    chat.page.get_by_role("button", name="New chat").click()
    expect(chat.messages()).to_have_count(0)
    chat.send("Beta")
    chat.wait_replies(1)
    titles = chat.page.locator(".session-title")
    expect(titles).to_have_text(["Beta", "Alpha"])

    act(chat, "Alpha", "Rename")
    chat.page.get_by_label("Chat title").fill("Renamed")
    chat.page.get_by_label("Chat title").press("Enter")
    expect(titles).to_have_text(["Beta", "Renamed"])

    act(chat, "Renamed", "Pin")
    expect(titles).to_have_text(["Renamed", "Beta"])
    expect(chat.page.locator(".session-item").first.locator(".badge-pin")).to_have_text("Pinned")
    stored = {s["title"]: s for s in chat.sessions()}
    assert stored["Renamed"]["pinned"] is True and stored["Beta"]["pinned"] is False

    chat.page.get_by_placeholder("Search chats").fill("bet")
    expect(titles).to_have_text(["Beta"])
    chat.page.get_by_placeholder("Search chats").fill("")
    expect(titles).to_have_text(["Renamed", "Beta"])

    act(chat, "Beta", "Archive")
    expect(titles).to_have_text(["Renamed"])
    chat.page.get_by_role("button", name="Archived").click()
    expect(titles).to_have_text(["Beta"])
    assert [s["title"] for s in chat.sessions(archived="true")] == ["Beta"]
    chat.page.get_by_role("button", name="Chats", exact=True).click()
    expect(titles).to_have_text(["Renamed"])

    # Opening a chat from the list shows its messages.
    chat.page.locator(".session-link").first.click()
    expect(chat.texts("user")).to_have_text(["Alpha"])
    act(chat, "Renamed", "Delete")
    chat.page.get_by_role("menuitem", name="Confirm delete").click()
    expect(titles).to_have_count(0)
    expect(chat.messages()).to_have_count(0)  # the open chat was deleted: back to a new one
    assert chat.page.url == chat.server.url + "/"
    assert chat.sessions() == []


def test_load_more_pages_with_the_keyset_cursor(chat: Chat) -> None:
    made = [str(uuid.uuid4()) for _ in range(35)]
    for n, session_id in enumerate(made):
        response = chat.api.put(f"/api/sessions/{session_id}", json={"title": f"Chat {n:02d}"})
        assert response.status_code == 201
    chat.page.reload()
    titles = chat.page.locator(".session-title")
    expect(titles).to_have_count(30)
    expect(titles.first).to_have_text("Chat 34")
    chat.page.get_by_role("button", name="Load more").click()
    expect(titles).to_have_count(35)
    expect(titles.last).to_have_text("Chat 00")
    expect(chat.page.get_by_role("button", name="Load more")).to_be_hidden()
