"""Settings (issue 9): the default model for new chats, the theme (system, light, dark), and the
user's own API keys, created, listed and revoked from the page and working against the API."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import Page, expect

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat, Shot

pytestmark = pytest.mark.browser
LIGHT_BG, DARK_BG = "rgb(255, 255, 255)", "rgb(23, 24, 28)"


def background(page: Page) -> str:
    color: str = page.evaluate("getComputedStyle(document.body).backgroundColor")
    return color


def open_settings(chat: Chat) -> None:
    chat.page.get_by_role("button", name="Settings").click()
    expect(chat.page.get_by_role("dialog", name="Settings")).to_be_visible()


def test_theme_is_system_light_or_dark_and_kept_across_reloads(chat: Chat, shot: Shot) -> None:
    chat.page.emulate_media(color_scheme="dark")
    assert background(chat.page) == DARK_BG  # system: follows the system's dark
    open_settings(chat)
    chat.page.get_by_label("Light").check()
    assert background(chat.page) == LIGHT_BG  # the user's choice beats the system
    chat.page.reload()
    expect(chat.input).to_be_visible()
    assert background(chat.page) == LIGHT_BG
    open_settings(chat)
    expect(chat.page.get_by_label("Light")).to_be_checked()
    chat.page.get_by_label("Dark").check()
    chat.page.emulate_media(color_scheme="light")
    assert background(chat.page) == DARK_BG
    shot(chat.page, "settings-dark")
    chat.page.get_by_label("System").check()
    assert background(chat.page) == LIGHT_BG


def test_default_model_is_used_by_new_chats(chat: Chat) -> None:
    picker = chat.page.get_by_label("Model", exact=True)
    expect(picker).to_have_value("fake-model")
    open_settings(chat)
    chat.page.get_by_label("Default model for new chats").select_option("fake-model-mini")
    chat.page.keyboard.press("Escape")
    expect(picker).to_have_value("fake-model-mini")
    chat.send("Which model?")
    chat.wait_replies(1)
    assert chat.sessions()[0]["model"] == "fake-model-mini"
    chat.page.reload()
    chat.page.get_by_role("button", name="New chat").click()
    expect(picker).to_have_value("fake-model-mini")


def test_api_keys_are_created_listed_and_revoked_from_the_page(chat: Chat, shot: Shot) -> None:
    open_settings(chat)
    dialog = chat.page.get_by_role("dialog", name="Settings")
    expect(dialog.locator(".key-item")).to_have_count(1)  # the test's own key
    chat.page.get_by_label("Key name").fill("laptop")
    dialog.get_by_role("button", name="Create key").click()
    value = dialog.get_by_label("New API key")
    expect(value).to_have_value(re.compile(r"^ck_"))
    key = value.input_value()
    expect(dialog.locator(".key-item", has_text="laptop")).to_be_visible()
    value.evaluate("el => { el.value = 'ck_' + 'x'.repeat(40); }")  # no key in a screenshot
    shot(chat.page, "settings")
    with httpx.Client(base_url=chat.server.url, timeout=30) as client:
        bearer = {"Authorization": f"Bearer {key}"}
        assert client.get("/api/sessions", headers=bearer).status_code == 200
        revoke = dialog.get_by_role("button", name="Revoke laptop")
        revoke.click()
        expect(revoke).to_have_text("Confirm revoke")
        revoke.click()
        expect(dialog.locator(".key-item", has_text="laptop")).to_have_count(0)
        assert client.get("/api/sessions", headers=bearer).status_code == 401
