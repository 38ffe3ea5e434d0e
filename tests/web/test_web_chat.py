"""The chat page's everyday path: send, stream, reload, and the double sends of the source
report (TC-1.2, TC-4.1, TC-4.3, E2E-1, E2E-2, E2E-3, Benchmark 1). E2E-1 talks to the built-in
demo model; the rest to the fake upstream, whose instant replies keep the suite quick."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import APIResponse, Route, expect

from support.fake_upstream import FakeUpstream

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat, Shot, WebServer

pytestmark = pytest.mark.browser


def hold_turns(chat: Chat) -> list[Route]:
    """Hold every turn request in the browser until the test lets it go."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    chat.page.route("**/api/sessions/*/turns", hold)
    return held


def wait_for(chat: Chat, held: list[Any], count: int = 1) -> None:
    for _ in range(500):
        if len(held) >= count:
            return
        chat.page.wait_for_timeout(10)
    raise AssertionError(f"expected {count} held requests, saw {len(held)}")


def assert_one_session_with_one_turn(chat: Chat, text: str) -> None:
    sessions = chat.sessions()
    assert len(sessions) == 1, sessions
    stored = chat.stored(sessions[0]["id"])
    assert [(m["role"], m["content"]) for m in stored][:1] == [("user", text)]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    expect(chat.messages("user")).to_have_count(1)
    expect(chat.messages("assistant")).to_have_count(1)


def test_full_chat_flow_two_turns(demo_chat: Chat) -> None:
    """E2E-1: two turns show 2 user and 2 assistant messages, stored once each, in order."""
    chat = demo_chat
    chat.send("Hello")
    expect(chat.texts("user")).to_have_text(["Hello"])
    chat.wait_replies(1)
    chat.send("Tell me more")
    chat.wait_replies(2)

    expect(chat.messages("user")).to_have_count(2)
    expect(chat.messages("assistant")).to_have_count(2)
    # The server built the second prompt from the stored history (G3): the demo model counts it.
    expect(chat.messages("assistant").nth(1)).to_contain_text("message 3 of this conversation")

    session_id = chat.active_session_id()
    assert chat.page.url == f"{chat.server.url}/c/{session_id}"
    stored = chat.stored(session_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in stored if m["role"] == "user"] == ["Hello", "Tell me more"]
    shown = chat.messages().evaluate_all("els => els.map(e => e.dataset.messageId)")
    assert shown == [m["id"] for m in stored]
    assert len(chat.sessions()) == 1


def test_reload_keeps_the_session(chat: Chat) -> None:
    """E2E-2: after a reload the same session is open (URL and localStorage), messages shown."""
    chat.send("Test message")
    chat.wait_replies(1)
    session_id = chat.active_session_id()

    chat.page.reload()
    expect(chat.texts("user")).to_have_text(["Test message"])
    expect(chat.messages("assistant")).to_have_count(1)
    assert chat.active_session_id() == session_id
    assert chat.page.url.endswith(f"/c/{session_id}")

    # Opening the bare address brings back the chat that was open.
    chat.page.goto(chat.server.url + "/")
    expect(chat.texts("user")).to_have_text(["Test message"])
    assert chat.page.url.endswith(f"/c/{session_id}")


def test_double_click_sends_one_message_into_one_session(chat: Chat) -> None:
    """TC-1.2: a rapid double click on Send creates one session and one message."""
    chat.input.fill("Message 1")
    chat.send_button.dblclick()
    chat.wait_replies(1)
    assert_one_session_with_one_turn(chat, "Message 1")


def test_enter_twice_sends_one_message_into_one_session(chat: Chat) -> None:
    """TC-1.2 (and the report's reproduction): Enter pressed twice sends one message."""
    chat.input.fill("Message 1")
    chat.input.press("Enter")
    chat.input.press("Enter")
    chat.wait_replies(1)
    assert_one_session_with_one_turn(chat, "Message 1")


def test_second_submit_in_the_same_tick_is_refused(chat: Chat) -> None:
    """TC-1.2, the report's ISSUE 3: a second submit that still sees the text (stale state) and
    bypasses the disabled button is refused by the guard set before any await."""
    chat.page.evaluate(
        """() => {
            const input = document.querySelector('[placeholder="Type a message..."]');
            const form = document.getElementById("composer");
            input.value = "Message 1";
            form.requestSubmit();
            input.value = "Message 1";
            form.requestSubmit();
        }"""
    )
    chat.wait_replies(1)
    assert_one_session_with_one_turn(chat, "Message 1")


def test_mobile_double_tap_sends_one_message(
    new_chat: Callable[..., Chat], fake_server: WebServer, fake: FakeUpstream
) -> None:
    """E2E-3: on a touch phone, two taps on Send within 50 ms: one session, one user message."""
    chat = new_chat(fake_server, phone=True)
    chat.open()
    chat.input.fill("Quick message")
    box = chat.send_button.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # Raw touches: the second lands whatever the button's state, as a real finger would.
    chat.page.touchscreen.tap(x, y)
    chat.page.wait_for_timeout(30)
    chat.page.touchscreen.tap(x, y)
    chat.wait_replies(1)
    assert_one_session_with_one_turn(chat, "Quick message")


def test_user_message_appears_before_the_server_answers(chat: Chat) -> None:
    """Benchmark 1: the user's message is on screen while its request has not been answered
    (held in the browser), so sending feels instant whatever the network does."""
    held = hold_turns(chat)
    chat.send("Test message")
    wait_for(chat, held)
    message = chat.messages("user")
    expect(chat.texts("user")).to_have_text("Test message")
    expect(message).to_have_attribute("data-status", "sending")
    assert chat.sessions() == []  # the server has not even seen it

    held[0].continue_()
    chat.wait_replies(1)
    expect(message).to_have_attribute("data-status", "complete")


def test_refetch_keeps_the_unconfirmed_message(chat: Chat) -> None:
    """TC-4.1: a refetch of the chat while a message is unconfirmed neither drops nor doubles
    it (the report's ISSUE 2); once confirmed, one element per message id."""
    chat.send("First")
    chat.wait_replies(1)
    session_id = chat.active_session_id()
    held = hold_turns(chat)
    chat.send("Second")
    wait_for(chat, held)

    with chat.page.expect_response(f"**/api/sessions/{session_id}"):
        chat.page.locator(".session-link").first.click()  # opening the chat again refetches it
    expect(chat.texts("user")).to_have_text(["First", "Second"])

    held[0].continue_()
    chat.wait_replies(2)
    shown = chat.messages().evaluate_all("els => els.map(e => e.dataset.messageId)")
    assert len(shown) == len(set(shown)) == 4
    assert shown == [m["id"] for m in chat.stored(session_id)]


def test_stale_refetch_does_not_drop_confirmed_messages(chat: Chat) -> None:
    """TC-4.1, the report's ISSUE 2 exactly: a refetch answered with data older than what the
    page has since confirmed (it lacks the newest turn) leaves that turn on screen."""
    chat.send("First")
    chat.wait_replies(1)
    session_id = chat.active_session_id()
    stale: list[tuple[Route, APIResponse]] = []

    def answer_late(route: Route) -> None:
        stale.append((route, route.fetch()))  # the server's state now, delivered later

    chat.page.route(f"**/api/sessions/{session_id}", answer_late)
    chat.page.locator(".session-link").first.click()
    wait_for(chat, stale)
    chat.send("Second")
    chat.wait_replies(2)

    route, response = stale[0]
    with chat.page.expect_response(f"**/api/sessions/{session_id}"):
        route.fulfill(response=response)
    expect(chat.texts("user")).to_have_text(["First", "Second"])
    expect(chat.messages("assistant")).to_have_count(2)


def test_merge_by_id_keeps_optimistic_and_has_no_duplicates(chat: Chat) -> None:
    """TC-4.3 and TC-4.1 on the page's own merge: a fetched copy replaces the optimistic one
    (same id, no duplicate); a stale fetch that lacks a newer message does not drop it."""
    result = chat.page.evaluate(
        """async () => {
            const { mergeMessages } = await import("/static/js/merge.js");
            const existing = { id: "a", seq: 1, content: "Existing", status: "complete" };
            const optimistic = { id: "b", content: "Optimistic", status: "complete" };
            const saved = { ...optimistic, seq: 2 };
            return {
                refetched: mergeMessages([existing, optimistic], [existing, saved]),
                stale: mergeMessages([existing, saved], [existing]),
                pending: mergeMessages([existing, optimistic], [existing]),
            };
        }"""
    )
    assert [(m["id"], m.get("seq")) for m in result["refetched"]] == [("a", 1), ("b", 2)]
    assert [m["id"] for m in result["stale"]] == ["a", "b"]
    assert [m["id"] for m in result["pending"]] == ["a", "b"]


# Records every moment the page shows the new-chat page's texts (checked after each DOM change,
# before any paint could show it), from the first byte of the document.
RECORD_FLASHES = """window.__flashes = [];
const FLASHES = [["chat-title", "New chat"], ["empty", "What's on your mind?"],
                 ["sessions-empty", "No chats yet."]];
new MutationObserver(() => {
  for (const [id, text] of FLASHES) {
    const el = document.getElementById(id);
    if (el && el.checkVisibility() && el.textContent.includes(text)) window.__flashes.push(text);
  }
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});"""


def test_reload_of_a_chat_shows_a_neutral_loading_state_never_the_new_chat_page(
    chat: Chat, shot: Shot
) -> None:
    """Issue 9, item 3: reloading /c/<id> never flashes "New chat", "What's on your mind?" or
    "No chats yet." before the chat is known: neutral placeholders until it loads."""
    chat.send("Remember this")
    chat.wait_replies(1)
    session_id = chat.active_session_id()
    title = chat.sessions()[0]["title"]
    chat.context.add_init_script(RECORD_FLASHES)
    chat.page.reload()
    expect(chat.page.locator("#chat-title")).to_have_text(title)
    expect(chat.texts("user")).to_have_text(["Remember this"])
    expect(chat.page.locator(f'.session-item[data-session-id="{session_id}"]')).to_be_visible()
    assert chat.page.evaluate("window.__flashes") == []
    # The same with nothing kept from the last visit (a new device, a cleared cache), and a
    # server slow to answer: placeholders until the chat is known.
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    chat.page.route(f"**/api/sessions/{session_id}", hold)
    # Cleared as the next page starts: the old one may still write its cache until it unloads.
    chat.context.add_init_script("localStorage.clear()")
    chat.page.reload()
    wait_for(chat, held)
    expect(chat.page.get_by_role("status", name="Loading chat")).to_be_visible()
    shot(chat.page, "loading")
    for route in held:
        route.continue_()
    chat.page.unroute(f"**/api/sessions/{session_id}")
    expect(chat.texts("user")).to_have_text(["Remember this"])
    expect(chat.page.get_by_role("status", name="Loading chat")).to_be_hidden()
    expect(chat.page.locator("#chat-title")).to_have_text(title)
    assert chat.page.evaluate("window.__flashes") == []
