"""What a message can hold: markdown and code (rendered), images (previewed, stored once, served
back with auth: TC-7.4), and hostile markup (rendered inert: no script ever runs)."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Dialog, expect

from support.fake_upstream import FakeUpstream

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat

pytestmark = pytest.mark.browser


def png(width: int = 3, height: int = 2) -> bytes:
    """A real, tiny, red PNG: the server checks that the bytes match the type."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_image_attachment_is_previewed_stored_and_shown(chat: Chat, tmp_path: Path) -> None:
    """TC-7.4: an attached PNG shows a preview (`alt="preview"`, a data: URL); sent as an
    image part, stored once by hash, and shown from its same-origin /api/blobs/ URL."""
    image = tmp_path / "red.png"
    image.write_bytes(png())
    chat.page.locator("#file").set_input_files(str(image))
    preview = chat.page.locator('img[alt="preview"]')
    expect(preview).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))

    chat.send("Check this out")
    expect(preview).to_have_count(0)
    chat.wait_replies(1)

    shown = chat.messages("user").locator("img")
    expect(shown).to_have_attribute("src", re.compile(r"^/api/blobs/[0-9a-f]{64}$"))
    expect(shown).to_have_js_property("naturalWidth", 3)  # fetched with the sign-in cookie

    stored = chat.stored(chat.active_session_id())[0]["content"]
    assert stored[0] == {"type": "text", "text": "Check this out"}
    assert stored[1]["type"] == "image_url"
    assert stored[1]["image_url"]["url"] == shown.get_attribute("src")
    assert chat.api.get(stored[1]["image_url"]["url"]).content == png()


def test_message_content_cannot_run_script(chat: Chat) -> None:
    """Markup in a message, the user's or the model's (the fake model echoes the user), is
    sanitized: no event handler, no javascript: link, no script element; no dialog opens."""
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    chat.page.on("dialog", on_dialog)
    chat.send(
        "<img src=x onerror=alert(1)> [click me](javascript:alert(2)) "
        "<script>alert(3)</script> "
        "<svg><a><animate attributeName=href values=javascript:alert(4) />"
        '<text y="20">svg</text></a></svg>'
    )
    chat.wait_replies(1)

    messages = chat.page.locator("#messages")
    for selector in ("[onerror]", "script", "svg", "[href^='javascript' i]", "iframe"):
        expect(messages.locator(selector)).to_have_count(0)
    links = messages.get_by_text("click me")
    expect(links).to_have_count(2)  # the user's message and the echo in the reply
    for link in links.all():
        link.click()
    chat.page.wait_for_timeout(300)
    assert dialogs == []
    assert chat.page.evaluate("typeof window.alert") == "function"
    assert chat.csp_violations() == []  # the markup was never parsed with its handlers


MARKDOWN_REPLY = """## Steps

Use **bold**, *italics* and a [safe link](https://example.org).

> a quote

1. first
2. second

| a | b |
| - | - |
| 1 | 2 |

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```"""


def test_markdown_and_code_render(chat: Chat, fake: FakeUpstream) -> None:
    """A reply's markdown renders: heading, emphasis, link, quote, list, table, and a code
    block with a Copy button; the raw markdown is not shown."""
    fake.set(reply=MARKDOWN_REPLY)
    chat.send("Show me some markdown")
    chat.wait_replies(1)
    reply = chat.texts("assistant")
    expect(reply.locator("h2")).to_have_text("Steps")
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("em")).to_have_text("italics")
    link = reply.get_by_role("link", name="safe link")
    expect(link).to_have_attribute("href", "https://example.org")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(reply.locator("blockquote")).to_have_text("a quote")
    expect(reply.locator("ol li")).to_have_text(["first", "second"])
    expect(reply.locator("td")).to_have_text(["1", "2"])
    expect(reply.locator("pre code")).to_contain_text('return f"Hello, {name}!"')
    expect(reply.get_by_role("button", name="Copy code")).to_be_visible()
    expect(reply).not_to_contain_text("**")
    expect(reply).not_to_contain_text("```")
