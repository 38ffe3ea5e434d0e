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


def test_copy_a_message_and_a_code_block_puts_the_exact_text_on_the_clipboard(
    chat: Chat, fake: FakeUpstream
) -> None:
    """Copy on the user's message, on the reply (its markdown) and on a code block, each saying
    `Copied`."""
    chat.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=chat.server.url)
    reply = "Here:\n\n```python\nprint('hi')\n```"
    fake.set(reply=reply)
    typed = "My  question\n  with <b>markup</b>"
    chat.send(typed)
    chat.wait_replies(1)

    def clipboard() -> str:
        """The clipboard once a write has landed (the click returns before it does)."""
        text: str = chat.page.evaluate(
            """async (before) => {
                for (let i = 0; i < 200; i += 1) {
                    const now = await navigator.clipboard.readText();
                    if (now !== before) return now;
                    await new Promise((resolve) => setTimeout(resolve, 25));
                }
                return before;
            }""",
            previous[0],
        )
        previous[0] = text
        return text

    previous = [""]

    # Each button says "Copied" for a moment; recorded as it happens (a headless clipboard
    # write can stall the page for longer than the moment lasts).
    chat.page.evaluate(
        """window.__said = [];
        new MutationObserver((records) => { for (const r of records)
            if (r.target.matches?.("button") && r.target.textContent === "Copied")
                window.__said.push(r.target.getAttribute("aria-label") || r.target.title);
        }).observe(document.getElementById("messages"), {subtree: true, childList: true});"""
    )
    chat.messages("user").get_by_role("button", name="Copy").click()
    assert clipboard() == typed
    chat.messages("assistant").get_by_role("button", name="Copy", exact=True).click()
    assert clipboard() == reply
    chat.page.get_by_role("button", name="Copy code").click()
    assert clipboard().strip() == "print('hi')"
    said = chat.page.evaluate("window.__said")
    assert said == ["Copy the message", "Copy the reply as markdown", "Copy code"]
