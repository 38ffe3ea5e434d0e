"""Export the open chat from the page (issue 9), in the command line's formats (docs/web.md):
JSON is the session with its messages as GET /api/sessions/{id} returns them; Markdown is
`# title` and a `**role**` section per message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat, Shot

pytestmark = pytest.mark.browser


def export(chat: Chat, label: str, shot: Shot | None = None) -> tuple[str, str]:
    chat.page.get_by_role("button", name="Export chat").click()
    if shot:
        shot(chat.page, "export")
    with chat.page.expect_download() as info:
        chat.page.get_by_role("menuitem", name=label).click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_text()


def test_export_the_open_chat_as_markdown_and_as_json(chat: Chat, shot: Shot) -> None:
    chat.send("First question")
    chat.wait_replies(1)
    chat.send("Second\nquestion")
    chat.wait_replies(2)
    session_id = chat.active_session_id()
    expect(chat.page.get_by_role("button", name="Export chat")).to_be_visible()

    name, text = export(chat, "Export as JSON", shot)
    assert name.endswith(f"-{session_id[:8]}.json")
    assert json.loads(text) == chat.api.get(f"/api/sessions/{session_id}").json()

    name, text = export(chat, "Export as Markdown")
    assert name.endswith(".md")
    detail = chat.api.get(f"/api/sessions/{session_id}").json()
    sections = "".join(f"**{m['role']}**\n\n{m['content']}\n\n" for m in detail["messages"])
    assert text == f"# {detail['title']}\n\n{sections}".rstrip() + "\n"
    assert "**user**\n\nSecond\nquestion\n\n**assistant**\n\n" in text
