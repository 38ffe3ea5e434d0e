"""The installable app (issue 9, item 4): a manifest with icons, and a real service worker that
keeps the app shell, so that the page opens offline with its chat list and composer, queues what
is sent, and sends it once when the network is back."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Response, expect

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from collections.abc import Callable

    from conftest import Chat, ReleasedServer, Shot

pytestmark = pytest.mark.browser


def wait_for_the_worker(chat: Chat) -> None:
    """Until the service worker has cached the shell and controls the page."""
    chat.page.evaluate("navigator.serviceWorker.ready")
    chat.page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=15_000)


def test_manifest_icons_and_worker_make_the_page_installable(chat: Chat) -> None:
    """The manifest names the app and its icons (real PNGs of the sizes they claim); the worker
    is served from the root with a version, and the page's CSP allows it."""
    manifest_url = chat.page.locator('link[rel="manifest"]').get_attribute("href")
    assert manifest_url
    response = chat.api.get(manifest_url)
    assert response.headers["content-type"].startswith("application/manifest+json")
    manifest = response.json()
    assert manifest["name"] == "chatkeep" and manifest["display"] == "standalone"
    assert manifest["start_url"] == "/" and manifest["scope"] == "/"
    sizes = {icon["sizes"] for icon in manifest["icons"] if icon["type"] == "image/png"}
    assert {"192x192", "512x512"} <= sizes
    for icon in manifest["icons"]:
        body = chat.api.get(icon["src"])
        assert body.status_code == 200
        if icon["type"] == "image/png":
            assert body.content[:8] == b"\x89PNG\r\n\x1a\n"
            width = int.from_bytes(body.content[16:20], "big")
            assert f"{width}x{width}" == icon["sizes"]
    worker = chat.api.get("/sw.js")
    assert worker.headers["content-type"].startswith("text/javascript")
    assert re.search(r'const VERSION = "0\.\d+\.\d+[^"]*-[0-9a-f]{16}"', worker.text)
    assert '"/static/js/main.js"' in worker.text and "__CHATKEEP" not in worker.text
    csp = chat.api.get("/").headers["content-security-policy"]
    assert "worker-src 'self'" in csp and "'unsafe-inline'" not in csp
    wait_for_the_worker(chat)
    assert chat.csp_violations() == []


def test_page_opens_offline_with_its_chats_and_sends_the_queue_once_when_back(
    chat: Chat, shot: Shot
) -> None:
    """Open the page, go offline, reload: the real service worker serves the app, which shows
    the cached chat list and the composer; a message sent offline is queued, and once the
    network is back it is stored exactly once."""
    chat.send("Before going offline")
    chat.wait_replies(1)
    session_id = chat.active_session_id()
    chat_in_the_list = chat.page.locator(f'.session-item[data-session-id="{session_id}"]')
    expect(chat_in_the_list).to_be_visible()  # the list the page keeps is the one last seen
    wait_for_the_worker(chat)
    api_requests_served_by_the_worker: list[str] = []

    def seen(response: Response) -> None:
        if response.from_service_worker and "/api/" in response.url:
            api_requests_served_by_the_worker.append(response.url)

    chat.page.on("response", seen)

    chat.context.set_offline(True)
    chat.page.reload()
    expect(chat.page.get_by_text("You are offline")).to_be_visible()
    expect(chat.input).to_be_visible()
    expect(chat_in_the_list).to_be_visible()
    expect(chat.texts("user")).to_have_text(["Before going offline"])
    chat.send("Written offline")
    expect(chat.messages("user").last).to_have_attribute("data-status", "queued")
    shot(chat.page, "offline")
    chat.page.reload()  # still offline: the queue survives a reload too
    expect(chat.messages("user").last).to_have_attribute("data-status", "queued")

    chat.context.set_offline(False)
    chat.wait_replies(2)
    stored = [m["content"] for m in chat.stored(session_id) if m["role"] == "user"]
    assert stored == ["Before going offline", "Written offline"]
    assert api_requests_served_by_the_worker == []


def test_a_new_release_replaces_the_cached_app_and_offers_a_reload(
    new_chat: Callable[..., Chat], release_server: ReleasedServer, shot: Shot
) -> None:
    """The worker's version follows the page's files: after a release (here, one changed file)
    the next visit installs a new worker, which replaces the old cache and says so."""
    chat = new_chat(release_server)
    chat.open()
    wait_for_the_worker(chat)
    before = chat.page.evaluate("caches.keys()")
    css = release_server.static / "css" / "app.css"
    css.write_text(css.read_text() + "\n/* the next release */\n")

    chat.page.reload()  # served by the old worker, which the browser checks against /sw.js
    expect(chat.page.get_by_text("A new version of chatkeep is ready.")).to_be_visible()
    shot(chat.page, "update")
    after = chat.page.evaluate(
        """async (old) => {  // the new worker deletes the old cache as it activates
            for (let i = 0; i < 400; i += 1) {
                const keys = await caches.keys();
                if (!keys.includes(old)) return keys;
                await new Promise((resolve) => setTimeout(resolve, 25));
            }
            return await caches.keys();
        }""",
        before[0],
    )
    assert len(before) == len(after) == 1 and before != after, "the old cache is gone"
    chat.page.get_by_role("button", name="Reload").click()
    expect(chat.input).to_be_visible()
    served = chat.page.evaluate("fetch('/static/css/app.css').then((r) => r.text())")
    assert "the next release" in served
