"""Browser tests: a real chatkeep server (SQLite, in a thread of this process), a real Chromium
driven by Playwright, real clicks and taps. The servers and the browser start once per run; each
test gets its own account and a fresh browser context (cookies, localStorage), so tests share
nothing but the process."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright
from sqlalchemy import Connection

from chatkeep.settings import Settings
from chatkeep.store import users
from support.fake_upstream import FakeUpstream, run_fake_upstream
from support.server import ServerThread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
_names = itertools.count(1)

expect.set_options(timeout=15_000)


def web_settings(tmp: Path, **overrides: Any) -> Settings:
    """Like tests/conftest.py's ``settings``, on SQLite only."""
    values: dict[str, Any] = {
        "data_dir": tmp / "data",
        "database_url": f"sqlite+aiosqlite:///{tmp / 'chatkeep.db'}",
        "demo_model": True,
        "ollama_autodetect": False,
        "rate_limit_per_minute": 0,
        **overrides,
    }
    return Settings(**values)


@dataclass(frozen=True)
class WebAccount:
    name: str
    key: str  # an API key, for checking what the server stored
    session_cookie: str  # a browser sign-in, as POST /api/auth/login would give
    csrf_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class WebServer:
    server: ServerThread
    settings: Settings

    @property
    def url(self) -> str:
        return self.server.url

    def new_account(self) -> WebAccount:
        """A new user, signed in. Made on the server's own loop and without a password: argon2
        costs about a second per account on a small machine, and test_web_auth.py covers the
        password forms."""
        name = f"user{next(_names)}"

        def work(conn: Connection) -> WebAccount:
            users.create_user(conn, name=name, password=None)
            key = users.create_api_key(conn, user_name=name, name="test")
            principal = users.Principal(users.user_pk(conn, name), name, False)
            token, csrf = users.start_web_session(conn, user=principal, days=1)
            return WebAccount(name, str(key["key"]), token, csrf)

        assert self.server.loop is not None
        db = self.server.app.state.db
        return asyncio.run_coroutine_threadsafe(db.write(work), self.server.loop).result(30)

    def sign_in(self, context: BrowserContext, account: WebAccount) -> None:
        context.add_cookies(
            [
                {
                    "name": "chatkeep_session",
                    "value": account.session_cookie,
                    "url": self.url,
                    "httpOnly": True,
                    "sameSite": "Lax",
                },
                {
                    "name": "chatkeep_csrf",
                    "value": account.csrf_token,
                    "url": self.url,
                    "sameSite": "Strict",
                },
            ]
        )


def serve(settings: Settings) -> Iterator[WebServer]:
    server = ServerThread(settings).start()
    try:
        yield WebServer(server, settings)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (make system-deps)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """chatkeep with only its built-in offline demo model."""
    yield from serve(web_settings(tmp_path_factory.mktemp("demo")))


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_server(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> Iterator[WebServer]:
    """chatkeep in front of the fake upstream, whose knobs make replies slow or failing."""
    settings = web_settings(
        tmp_path_factory.mktemp("fake"), openai_base_url=upstream.base_url, demo_model=False
    )
    yield from serve(settings)


@pytest.fixture
def fake(upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """The fake upstream with its default knobs, reset again afterwards."""
    upstream.reset()
    yield upstream
    upstream.reset()


@pytest.fixture
def fresh_server(tmp_path: Path, fake: FakeUpstream) -> Iterator[WebServer]:
    """A new instance with an empty database, so the page must offer the first-run form."""
    yield from serve(web_settings(tmp_path, openai_base_url=fake.base_url, demo_model=False))


@pytest.fixture
def blank_page(browser: Browser) -> Iterator[Page]:
    """A desktop tab that nobody has signed in to."""
    context = browser.new_context(**DESKTOP)
    yield context.new_page()
    context.close()


@dataclass
class Chat:
    """A signed-in browser tab and the same user's API client, to check what was stored."""

    page: Page
    context: BrowserContext
    server: WebServer
    account: WebAccount
    api: httpx.Client
    page_errors: list[str] = field(default_factory=list)

    @property
    def input(self) -> Locator:
        return self.page.get_by_placeholder("Type a message...")

    @property
    def send_button(self) -> Locator:
        return self.page.get_by_role("button", name="Send", exact=True)

    def messages(self, role: str | None = None) -> Locator:
        """The message elements (with their status line), of one role or all."""
        selector = f'[data-role="{role}"]' if role else "[data-role]"
        return self.page.locator(f"#messages {selector}")

    def texts(self, role: str) -> Locator:
        """The rendered content of each message of ``role``."""
        return self.messages(role).locator(".msg-content")

    def open(self, path: str = "/") -> None:
        self.page.goto(self.server.url + path)
        expect(self.input).to_be_visible()

    def send(self, text: str) -> None:
        self.input.fill(text)
        self.send_button.click()

    def wait_replies(self, count: int) -> None:
        """Until ``count`` replies are complete and the composer is ready again. Checked on
        every animation frame: ``expect`` polls up to a second apart, which adds up."""
        self.page.wait_for_function(
            """n => document.querySelectorAll(
                '#messages [data-role="assistant"][data-status="complete"]').length === n
                && !document.getElementById("send").disabled""",
            arg=count,
            timeout=15_000,
        )

    def active_session_id(self) -> str:
        value = self.page.evaluate("localStorage.getItem('active_session_id')")
        assert isinstance(value, str)
        return value

    def sessions(self, **params: str) -> list[dict[str, Any]]:
        response = self.api.get("/api/sessions", params=params)
        response.raise_for_status()
        sessions: list[dict[str, Any]] = response.json()["sessions"]
        return sessions

    def stored(self, session_id: str) -> list[dict[str, Any]]:
        """The session's stored messages (every branch), in seq order."""
        response = self.api.get(f"/api/sessions/{session_id}/messages")
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages


@pytest.fixture
def new_chat(browser: Browser) -> Iterator[Callable[..., Chat]]:
    """``new_chat(server, phone=False)``: a new account, signed in, in a new browser context.
    Uncaught errors in the page fail the test."""
    opened: list[Chat] = []

    def make(server: WebServer, *, phone: bool = False) -> Chat:
        account = server.new_account()
        context = browser.new_context(**(PHONE if phone else DESKTOP))
        server.sign_in(context, account)
        page = context.new_page()
        client = httpx.Client(base_url=server.url, headers=account.headers, timeout=30)
        chat = Chat(page, context, server, account, client)
        page.on("pageerror", lambda error: chat.page_errors.append(str(error)))
        opened.append(chat)
        return chat

    yield make
    for chat in opened:
        chat.context.close()
        chat.api.close()
    errors = [error for chat in opened for error in chat.page_errors]
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def demo_chat(new_chat: Callable[..., Chat], demo_server: WebServer) -> Chat:
    """A signed-in tab on the server with the built-in demo model, at the new-chat page."""
    tab = new_chat(demo_server)
    tab.open()
    return tab


@pytest.fixture
def chat(new_chat: Callable[..., Chat], fake_server: WebServer, fake: FakeUpstream) -> Chat:
    """A signed-in tab on the server whose model is the fake upstream: by default it answers
    ``Echo: <message>`` at once; its knobs (``fake.set``) make it slow or failing."""
    tab = new_chat(fake_server)
    tab.open()
    return tab
