"""First run and sign-in through the page's own forms, on a server with no account yet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Page, expect

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import WebServer

pytestmark = pytest.mark.browser


def fill_in(page: Page, name: str, password: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)


def test_first_run_setup_then_sign_out_and_sign_in(
    blank_page: Page, fresh_server: WebServer
) -> None:
    """needs_setup -> the form creates the admin account and signs it in; the session works
    for unsafe requests (X-CSRF-Token); sign out; a wrong password is refused; sign in again."""
    page = blank_page
    page.goto(fresh_server.url)
    expect(page.get_by_role("heading", name="Welcome to chatkeep")).to_be_visible()
    fill_in(page, "admin", "correct horse battery")
    page.get_by_role("button", name="Create account").click()
    composer = page.get_by_placeholder("Type a message...")
    expect(composer).to_be_visible()
    expect(page.locator("#user-name")).to_have_text("admin")

    composer.fill("Hello")
    page.get_by_role("button", name="Send", exact=True).click()  # a POST: needs the CSRF token
    expect(page.locator('[data-role="assistant"][data-status="complete"]')).to_have_count(1)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to chatkeep")).to_be_visible()
    assert page.evaluate("localStorage.getItem('active_session_id')") is None

    fill_in(page, "admin", "wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong name or password.")

    fill_in(page, "admin", "correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    expect(composer).to_be_visible()
    expect(page.locator(".session-title")).to_have_text(["Hello"])
