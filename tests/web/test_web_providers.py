"""The page and real gateways (issue 8), in Chromium: the model picker says which provider is
failing and why instead of hiding its models; a user's last used model is their default for a
new chat; a reasoning model's thinking is shown collapsed above the answer ("Thought for 3 s"),
live and after a reload, and never mixed into the answer."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import Chat, WebServer, serve, web_settings
from support.fake_upstream import FakeUpstream, run_fake_upstream

pytestmark = pytest.mark.browser
KEY = "sk-good-key-123456"


@pytest.fixture(scope="module")
def gateway() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def two_providers(
    tmp_path_factory: pytest.TempPathFactory, gateway: FakeUpstream
) -> Iterator[WebServer]:
    """ "good" has the gateway's key, "bad" a wrong one (and an allow-list, so its model is
    known although it never listed)."""
    gateway.set(require_key=KEY)
    providers = [
        {"name": "good", "base_url": gateway.base_url, "api_key": KEY},
        {
            "name": "bad",
            "base_url": gateway.base_url,
            "api_key": "sk-wrong-key-999",
            "models": ["fake-model"],
        },
    ]
    settings = web_settings(
        tmp_path_factory.mktemp("providers"),
        demo_model=False,
        providers=providers,
        provider_recheck_min_s=0.05,
        provider_recheck_max_s=0.05,
    )
    yield from serve(settings)


@pytest.fixture
def tab(new_chat: Callable[..., Chat], two_providers: WebServer, gateway: FakeUpstream) -> Chat:
    # Not reset(): for a moment it would take any key, and "bad" could be checked then.
    gateway.set(require_key=KEY, reply=None, reasoning=None, token_interval_s=0.0, chunk_chars=4)
    chat = new_chat(two_providers)
    chat.open()
    return chat


def test_the_picker_shows_a_failing_provider_and_keeps_its_models(tab: Chat) -> None:
    picker = tab.page.get_by_label("Model", exact=True)
    state = tab.page.locator("#provider-state")
    expect(state).to_have_text("bad: key refused")
    expect(state).to_have_attribute("title", re.compile("Incorrect API key"))
    assert "sk-wrong-key-999" not in (state.get_attribute("title") or "")
    expect(picker).to_have_value("good:fake-model")
    labels = picker.locator("option").all_text_contents()
    assert labels == [
        "good:fake-model",
        "good:fake-model-mini",
        "bad:fake-model (key refused)",
    ]

    picker.select_option("bad:fake-model")
    tab.send("hello?")
    reply = tab.messages("assistant").last
    expect(reply).to_have_attribute("data-status", "error")
    expect(reply).to_contain_text("Incorrect API key")


def test_a_provider_that_recovers_shows_as_ok_after_a_reload(
    new_chat: Callable[..., Chat], tmp_path: Path
) -> None:
    with run_fake_upstream() as gateway:
        gateway.set(require_key=KEY)
        bad = [{"name": "bad", "base_url": gateway.base_url, "api_key": "sk-wrong-key-999"}]
        good = [{"name": "good", "base_url": gateway.base_url, "api_key": KEY}]
        settings = web_settings(
            tmp_path, demo_model=False, providers=good + bad, provider_recheck_min_s=0.05
        )
        for server in serve(settings):
            tab = new_chat(server)
            tab.open()
            expect(tab.page.locator("#provider-state")).to_have_text("bad: key refused")
            gateway.set(require_key=None)  # the gateway now takes any key
            tab.page.wait_for_timeout(200)  # past the 0.05 s backoff
            tab.open()
            expect(tab.page.locator("#provider-state")).to_be_hidden()
            labels = (
                tab.page.get_by_label("Model", exact=True).locator("option").all_text_contents()
            )
            assert "bad:fake-model" in labels


def test_the_last_used_model_is_the_default_of_a_new_chat(tab: Chat) -> None:
    picker = tab.page.get_by_label("Model", exact=True)
    picker.select_option("good:fake-model-mini")
    tab.send("first")
    tab.wait_replies(1)
    tab.page.get_by_role("button", name="New chat").first.click()
    expect(picker).to_have_value("good:fake-model-mini")
    tab.open()
    expect(picker).to_have_value("good:fake-model-mini")
    (session,) = tab.sessions()
    assert session["model"] == "good:fake-model-mini"


def test_reasoning_is_shown_collapsed_above_the_answer(tab: Chat, gateway: FakeUpstream) -> None:
    gateway.set(
        reply="The answer is 42.",
        reasoning="Let me count: six times seven.",
        token_interval_s=0.02,
        chunk_chars=3,
    )
    tab.send("What is six times seven?")
    tab.wait_replies(1)
    reply = tab.messages("assistant").last
    thought = reply.locator("details.msg-reasoning")
    expect(thought.locator("summary")).to_have_text(re.compile(r"^Thought for \d+ s$"))
    expect(thought).not_to_have_attribute("open", "")
    expect(thought.locator(".reasoning-text")).to_be_hidden()
    expect(reply.locator(".msg-content")).to_have_text("The answer is 42.")

    thought.locator("summary").click()
    expect(thought.locator(".reasoning-text")).to_have_text("Let me count: six times seven.")

    tab.page.reload()
    thought = tab.messages("assistant").last.locator("details.msg-reasoning")
    expect(thought.locator("summary")).to_have_text(re.compile(r"^Thought for \d+ s$"))
    stored = tab.stored(tab.active_session_id())[-1]
    assert stored["reasoning"] == "Let me count: six times seven."
    assert stored["content"] == "The answer is 42."
