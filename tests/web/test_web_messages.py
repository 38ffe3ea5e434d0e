"""What a person does with a message: see their own words exactly as typed, copy a message or a
code block, edit and regenerate (branches with the `‹ 1/2 ›` switcher), continue a reply that
stopped (issue 9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from support.fake_upstream import FakeUpstream

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat

pytestmark = pytest.mark.browser

LOOKS_LIKE_HTML = (
    "How do I use <details><summary>these</summary>inside</details>?\n"
    "  <script>alert(1)</script>\n"
    '<iframe src="https://example.org"></iframe> and <svg onload="alert(2)"><circle r="4"/></svg>\n'
    "\n"
    "    indented   [x](javascript:alert(3)) **not bold**"
)


def test_user_text_is_shown_exactly_as_typed_never_as_markup(chat: Chat) -> None:
    """Item 1: markup in the user's own message shows as the characters typed (line breaks and
    runs of spaces kept), is never parsed as HTML or markdown, and logs no CSP violation."""
    chat.send(LOOKS_LIKE_HTML)
    chat.wait_replies(1)
    shown = chat.texts("user")
    assert shown.inner_text() == LOOKS_LIKE_HTML
    for selector in ("details", "script", "iframe", "svg", "a", "strong"):
        expect(shown.locator(selector)).to_have_count(0)
    stored = chat.stored(chat.active_session_id())
    assert stored[0]["content"] == LOOKS_LIKE_HTML
    chat.page.reload()
    expect(chat.texts("user")).to_have_count(1)
    assert chat.texts("user").inner_text() == LOOKS_LIKE_HTML
    assert chat.csp_violations() == []
