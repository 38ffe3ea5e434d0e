"""The layout on a desktop and on a phone (390x844, touch): nothing overflows sideways, the
composer stays on screen, and on the phone the sidebar is a drawer. Each test leaves a
screenshot in /tmp for a person to look at."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from support.fake_upstream import FakeUpstream

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat, WebServer

pytestmark = pytest.mark.browser

RICH_REPLY = """Here is a **short** answer, with a list:

- greet by name
- return the text instead of printing it

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```

Call it as `greet("Ada")`."""


def assert_fits_the_viewport(chat: Chat) -> None:
    width = chat.page.evaluate("document.documentElement.scrollWidth")
    assert width <= chat.page.viewport_size["width"]  # type: ignore[index]
    box = chat.send_button.bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= chat.page.viewport_size["height"]  # type: ignore[index]


def test_desktop_layout(chat: Chat, fake: FakeUpstream) -> None:
    fake.set(reply=RICH_REPLY)
    chat.send("How do I greet someone in Python?")
    chat.wait_replies(1)
    fake.set(reply="Use `print(greet('Ada'))`.")
    chat.send("Thanks! And to print it?")
    chat.wait_replies(2)
    expect(chat.page.locator("#sidebar")).to_be_visible()
    expect(chat.page.get_by_role("button", name="Open sidebar")).to_be_hidden()
    assert_fits_the_viewport(chat)
    chat.page.screenshot(path="/tmp/chatkeep-desktop.png")


def test_phone_layout_with_a_drawer_sidebar(
    new_chat: Callable[..., Chat], fake_server: WebServer, fake: FakeUpstream
) -> None:
    chat = new_chat(fake_server, phone=True)
    chat.open()
    fake.set(reply=RICH_REPLY)
    sidebar = chat.page.locator("#sidebar")
    expect(sidebar).to_be_hidden()

    chat.input.fill("How do I greet someone in Python?")
    chat.send_button.tap()
    chat.wait_replies(1)
    assert_fits_the_viewport(chat)
    chat.page.screenshot(path="/tmp/chatkeep-phone.png")

    chat.page.get_by_role("button", name="Open sidebar").tap()
    expect(sidebar).to_be_visible()
    chat.page.locator(".session-link").first.tap()
    expect(sidebar).to_be_hidden()
    expect(chat.texts("user")).to_have_text(["How do I greet someone in Python?"])
