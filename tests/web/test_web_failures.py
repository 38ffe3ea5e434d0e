"""When things go wrong: a save that fails, the network gone, a reply stopped or interrupted by
a reload, a chat deleted elsewhere mid-stream (TC-2.3, TC-3.3, TC-6.3, TC-7.3, G5, G6). The
model is the fake upstream, made slow where a test needs a reply that is still streaming."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Request, Route, expect

from support.fake_upstream import FakeUpstream

if TYPE_CHECKING:  # fixtures give the values; conftest is not imported at run time
    from conftest import Chat, Shot

pytestmark = pytest.mark.browser

# At the pace set by slow(): about 4 s, the shortest that a reload on a busy machine cannot
# outrun; and one that no test waits for, for tests that stop or delete it early on.
SLOW_REPLY = " ".join(f"word{n}" for n in range(300))
ENDLESS_REPLY = " ".join(f"word{n}" for n in range(5000))


def slow(fake: FakeUpstream, reply: str = SLOW_REPLY) -> None:
    fake.set(reply=reply, chunk_chars=10, token_interval_s=0.02)


def turn_bodies(chat: Chat) -> list[dict[str, Any]]:
    """Every turn request the page makes from now on, as the JSON it sent."""
    bodies: list[dict[str, Any]] = []

    def seen(request: Request) -> None:
        if request.url.endswith("/turns"):
            bodies.append(json.loads(request.post_data or "{}"))

    chat.page.on("request", seen)
    return bodies


def resumes(chat: Chat) -> list[str]:
    """The Last-Event-ID of every request that re-attaches to a reply, from now on."""
    ids: list[str] = []

    def seen(request: Request) -> None:
        if request.url.endswith("/stream"):
            ids.append(request.headers.get("last-event-id", ""))

    chat.page.on("request", seen)
    return ids


def test_failed_save_is_shown_and_retried_with_the_same_ids(chat: Chat) -> None:
    """TC-2.3: the server cannot be reached for the save. The message stays on screen marked
    `Failed to save`; Retry sends the same ids, and the server stores it once."""
    attempts: list[dict[str, Any]] = []

    def lose_the_answer(route: Route) -> None:
        attempts.append(json.loads(route.request.post_data or "{}"))
        if len(attempts) == 1:
            route.fetch()  # the first attempt reaches the server; its answer is lost
        route.abort("connectionreset")

    chat.page.route("**/api/sessions/*/turns", lose_the_answer)
    chat.send("Test message")
    expect(chat.page.get_by_title("Failed to save")).to_be_visible()
    expect(chat.texts("user")).to_have_text(["Test message"])
    expect(chat.messages("user")).to_have_attribute("data-status", "failed")
    assert len(attempts) >= 2, "the page retries with backoff before it gives up"
    assert all(body == attempts[0] for body in attempts), "every retry repeats the same turn"

    chat.page.unroute("**/api/sessions/*/turns")
    retried = turn_bodies(chat)
    chat.page.get_by_role("button", name="Retry").click()
    chat.wait_replies(1)
    expect(chat.page.get_by_title("Failed to save")).to_have_count(0)
    assert retried == [attempts[0]]

    message_id = attempts[0]["message"]["id"]
    stored = chat.stored(chat.active_session_id())
    assert [(m["id"], m["role"]) for m in stored] == [
        (message_id, "user"),
        (attempts[0]["reply_id"], "assistant"),
    ]
    expect(chat.messages("user")).to_have_attribute("data-message-id", message_id)


def test_offline_messages_are_queued_and_sent_once_in_order(chat: Chat) -> None:
    """TC-6.3: offline, a banner says so and messages wait in the browser's outbox; back online
    they are sent in order, once each, with the ids they were given."""
    sent = turn_bodies(chat)
    chat.context.set_offline(True)
    banner = chat.page.get_by_text("You are offline")
    expect(banner).to_be_visible()

    chat.send("Offline 1")
    chat.send("Offline 2")
    expect(chat.texts("user")).to_have_text(["Offline 1", "Offline 2"])
    expect(chat.page.locator('[data-role="user"][data-status="queued"]')).to_have_count(2)
    outbox = chat.page.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('chatkeep.outbox'))"
        ".flatMap(k => JSON.parse(localStorage.getItem(k)))"
    )
    assert [e["body"]["message"]["content"] for e in outbox] == ["Offline 1", "Offline 2"]
    assert sent == []

    chat.context.set_offline(False)
    expect(banner).to_be_hidden()
    chat.wait_replies(2)
    assert [body["message"]["id"] for body in sent] == [e["id"] for e in outbox]
    stored = chat.stored(chat.active_session_id())
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "Offline 1"),
        ("assistant", "Echo: Offline 1"),
        ("user", "Offline 2"),
        ("assistant", "Echo: Offline 2"),
    ]
    assert [m["id"] for m in stored if m["role"] == "user"] == [e["id"] for e in outbox]
    assert (
        chat.page.evaluate(
            "localStorage.getItem(Object.keys(localStorage).find(k => "
            "k.startsWith('chatkeep.outbox')))"
        )
        == "[]"
    )


def test_send_is_disabled_while_generating_and_stop_keeps_the_text(
    chat: Chat, fake: FakeUpstream
) -> None:
    """TC-3.3: while a reply streams, `Generating...` shows and Send is disabled, so a second
    message is not sent; Stop cancels the generation and keeps the text so far."""
    slow(fake, ENDLESS_REPLY)
    chat.send("Message 1")
    generating = chat.page.get_by_text("Generating...")
    expect(generating).to_be_visible()
    expect(chat.send_button).to_be_disabled()
    reply = chat.messages("assistant")
    expect(reply).to_contain_text("word5 ")

    sent = turn_bodies(chat)
    chat.input.fill("Message 2")
    chat.send_button.click(force=True)
    chat.input.press("Enter")
    chat.page.evaluate("document.getElementById('composer').requestSubmit()")

    chat.page.get_by_role("button", name="Stop").click()
    expect(reply).to_have_attribute("data-status", "cancelled")
    expect(generating).to_be_hidden()
    expect(chat.send_button).to_be_enabled()
    assert sent == []
    expect(chat.input).to_have_value("Message 2")
    assert fake.stats().chat_requests == 1

    stored = chat.stored(chat.active_session_id())
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"),
        ("assistant", "cancelled"),
    ]
    kept = stored[1]["content"]
    assert kept.startswith("word0 word1") and len(kept) < len(ENDLESS_REPLY)
    expect(chat.texts("assistant")).to_have_text(kept.strip())


def test_reload_mid_stream_resumes_the_reply(chat: Chat, fake: FakeUpstream) -> None:
    """G6: a reload while the reply streams re-attaches to it with Last-Event-ID and shows the
    whole reply once it completes, with nothing missing and nothing twice."""
    slow(fake)
    chat.send("Tell me a long story")
    reply = chat.messages("assistant")
    expect(reply).to_contain_text("word3 ")
    resumed = resumes(chat)
    chat.page.reload()
    expect(chat.page.get_by_text("Generating...")).to_be_visible()
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(chat.texts("assistant")).to_have_text(SLOW_REPLY)
    assert resumed, "the page attached to the streaming reply"
    assert re.fullmatch(r"[0-9a-f-]{36}:[1-9][0-9]*", resumed[0])
    stored = chat.stored(chat.active_session_id())
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert fake.stats().chat_requests == 1


def test_dropped_stream_is_resumed_where_it_stopped(chat: Chat, fake: FakeUpstream) -> None:
    """G6: the turn's stream breaks off in the middle of an event; the page re-attaches with
    the Last-Event-ID of the last whole delta and gets exactly the rest of the reply."""
    fake.set(reply=SLOW_REPLY, chunk_chars=20, token_interval_s=0.005)
    cut_at: list[str] = []

    def break_off(route: Route) -> None:
        response = route.fetch()
        events = re.split(r"(?<=\r\n\r\n)", response.text())
        whole = "".join(events[: len(events) // 2])
        cut_at.extend(re.findall(r"^id: (\S+)", whole, re.M))
        # Ends 20 characters into the next event: a torn event that the page must not use.
        route.fulfill(response=response, body=whole + events[len(events) // 2][:20])

    chat.page.route("**/api/sessions/*/turns", break_off)
    resumed = resumes(chat)
    chat.send("Tell me a long story")
    reply = chat.messages("assistant")
    expect(reply).to_have_attribute("data-status", "complete")
    expect(chat.texts("assistant")).to_have_text(SLOW_REPLY)
    assert cut_at, "the stream broke after at least one whole delta"
    assert resumed == [cut_at[-1]]
    stored = chat.stored(chat.active_session_id())
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert fake.stats().chat_requests == 1


def test_event_stream_parser_survives_any_chunking(chat: Chat) -> None:
    """The page's own SSE parser (fetch cannot use EventSource's): CRLF split across network
    chunks, comments (keep-alive pings), multi-line data, ids kept, a torn tail dropped."""
    events = chat.page.evaluate(
        """async () => {
            const { readEvents } = await import("/static/js/sse.js");
            const chunks = [
                ": ping\\r\\n\\r\\nevent: start\\r", "\\ndata: {}\\r\\n\\r\\n",
                "id: r:3\\r\\nevent: delta\\r\\ndata: {\\"text\\":", " \\"abc\\"}\\r\\n\\r",
                "\\nevent: note\\ndata: one\\ndata: two\\n\\n", "id: r:9\\r\\nevent: delta\\r\\nda",
            ];
            const body = new ReadableStream({
                start(controller) {
                    for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
                    controller.close();
                },
            });
            const seen = [];
            for await (const ev of readEvents(new Response(body))) seen.push(ev);
            return seen;
        }"""
    )
    assert events == [
        {"event": "start", "data": "{}", "id": None},
        {"event": "delta", "data": '{"text": "abc"}', "id": "r:3"},
        {"event": "note", "data": "one\ntwo", "id": "r:3"},
    ]


def test_session_deleted_mid_stream_says_so(chat: Chat, fake: FakeUpstream) -> None:
    """TC-7.3 and G5: the chat is deleted elsewhere while its reply streams; the page shows
    `Session was deleted`, stops generating, and the chat leaves the sidebar."""
    slow(fake, ENDLESS_REPLY)
    chat.send("Hello")
    expect(chat.messages("assistant")).to_contain_text("word1 ")
    session_id = chat.active_session_id()
    expect(chat.page.locator(".session-item")).to_have_count(1)

    assert chat.api.delete(f"/api/sessions/{session_id}").status_code == 204
    expect(chat.page.get_by_text("Session was deleted")).to_be_visible()
    expect(chat.page.get_by_text("Generating...")).to_be_hidden()
    expect(chat.page.locator(".session-item")).to_have_count(0)

    chat.page.reload()
    expect(chat.page.get_by_text("Session was deleted")).to_be_visible()
    chat.page.get_by_role("button", name="Start a new chat").click()
    expect(chat.page.get_by_text("Session was deleted")).to_be_hidden()
    assert chat.page.url == chat.server.url + "/"


def test_session_deleted_mid_stream_keeps_the_words_shown_and_marks_the_reply_stopped(
    chat: Chat, fake: FakeUpstream, shot: Shot
) -> None:
    """Issue 9, item 2: the words already on screen stay when the chat is deleted elsewhere; the
    cursor ends (no `streaming` reply left) and the reply says `Stopped`."""
    slow(fake, ENDLESS_REPLY)
    chat.send("Hello")
    reply = chat.messages("assistant")
    expect(reply).to_contain_text("word3 ")
    assert chat.api.delete(f"/api/sessions/{chat.active_session_id()}").status_code == 204
    expect(chat.page.get_by_text("Session was deleted")).to_be_visible()
    expect(reply).to_have_attribute("data-status", "cancelled")
    expect(reply).not_to_have_class(re.compile(r"\bstreaming\b"))
    expect(chat.texts("assistant")).to_contain_text("word0 word1 word2 word3")
    expect(reply.get_by_text("Stopped")).to_be_visible()
    expect(chat.texts("user")).to_have_text("Hello")
    expect(chat.page.get_by_role("button", name="Stop")).to_be_hidden()
    shot(chat.page, "deleted-mid-stream")


def test_stop_shows_from_the_moment_of_sending_and_before_the_first_token_cancels_empty(
    chat: Chat, fake: FakeUpstream
) -> None:
    """Issue 9, item 5: Stop is visible in the same tick as Send, before the server answers; a
    stop before the first token leaves a `cancelled` reply with empty text, and the user's
    message is kept."""
    fake.set(ttft_s=30)  # a model that thinks for a long time
    chat.input.fill("Think hard")
    shown = chat.page.evaluate(
        """async () => {
            document.getElementById("send").click();
            await new Promise((resolve) => queueMicrotask(resolve));  // one render
            const stop = document.getElementById("stop");
            const visible = !stop.hidden && stop.checkVisibility();
            stop.click();  // nothing has come back from the server yet
            return visible;
        }"""
    )
    assert shown, "Stop is visible as soon as the turn is sent"
    reply = chat.messages("assistant")
    expect(reply).to_have_attribute("data-status", "cancelled")
    expect(chat.texts("assistant")).to_have_text("")
    expect(reply.get_by_text("Stopped")).to_be_visible()
    expect(chat.page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(chat.send_button).to_be_enabled()
    stored = chat.stored(chat.active_session_id())
    assert [(m["role"], m["status"], m["content"]) for m in stored] == [
        ("user", "complete", "Think hard"),
        ("assistant", "cancelled", ""),
    ]
