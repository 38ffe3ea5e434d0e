"""Real gateways (issue 8) against the fake upstream over real HTTP and SSE: a bad key or a
refused connection is a provider state and a precise error, never a vanished model; a provider
that comes back is used again without a restart; reasoning arrives apart from the text; slow
first tokens are waited for; a server that refuses ``stream_options`` is asked once without."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatkeep.providers import Chunk, ProviderError, Providers
from chatkeep.providers.demo import DemoProvider
from chatkeep.providers.health import Health
from chatkeep.providers.kinds import model_kind
from chatkeep.providers.openai_compat import OpenAICompatProvider
from chatkeep.providers.reasoning import ThinkSplitter
from chatkeep.settings import Settings
from support.fake_upstream import FakeUpstream, run_fake_upstream

HELLO = [{"role": "user", "content": "Hello there"}]
KEY = "sk-right-0123456789"


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as upstream:
        yield upstream


def quick_health() -> Health:
    """Asked again at every chance, so a test sees a recovery at once."""
    return Health(ok_ttl_s=0, backoff_min_s=0, backoff_max_s=0)


@pytest.fixture
async def keyed(fake: FakeUpstream) -> AsyncIterator[OpenAICompatProvider]:
    provider = OpenAICompatProvider(
        name="gw", base_url=fake.base_url, api_key=KEY, health=quick_health()
    )
    yield provider
    await provider.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def collect(provider: Any, model: str = "fake-model") -> list[Chunk]:
    return [chunk async for chunk in provider.stream_chat(model=model, messages=HELLO)]


async def test_a_bad_key_is_unauthorized_keeps_the_last_models_and_recovers(
    fake: FakeUpstream, keyed: OpenAICompatProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 8, item 1: the models stay listed, the state says why, a turn gets
    upstream_unauthorized, and once the key is right again the provider is ok without a
    restart. The upstream repeats the key it got; neither the state nor the log does."""
    fake.set(require_key=KEY)
    assert [m.id for m in await keyed.list_models()] == ["fake-model", "fake-model-mini"]
    assert keyed.health.status.state == "ok"

    fake.set(require_key="sk-rotated-key")
    assert [m.id for m in await keyed.list_models()] == ["fake-model", "fake-model-mini"]
    status = keyed.health.status
    assert status.state == "unauthorized" and status.checked_at is not None
    assert "Incorrect API key" in status.message and KEY not in status.message
    with pytest.raises(ProviderError) as caught:
        await collect(keyed)
    assert (caught.value.code, caught.value.status) == ("upstream_unauthorized", 401)
    assert KEY not in caught.value.message and KEY not in caplog.text

    fake.set(require_key=KEY)
    await keyed.list_models()
    assert keyed.health.status.state == "ok"
    assert "".join(c.text for c in await collect(keyed)) == "Echo: Hello there"


async def test_a_refused_connection_is_unreachable_and_upstream_unavailable() -> None:
    down = OpenAICompatProvider(
        name="gone", base_url=f"http://127.0.0.1:{closed_port()}/v1", health=quick_health()
    )
    try:
        assert await down.list_models() == []
        assert down.health.status.state == "unreachable"
        with pytest.raises(ProviderError) as caught:
            await collect(down)
        assert caught.value.code == "upstream_unavailable"
    finally:
        await down.aclose()


async def test_recheck_backs_off_while_a_provider_stays_down(fake: FakeUpstream) -> None:
    """A failing provider is not asked at every listing: once per backoff period."""
    fake.set(require_key="something-else")
    provider = OpenAICompatProvider(
        name="gw", base_url=fake.base_url, health=Health(backoff_min_s=60)
    )
    try:
        for _ in range(5):
            await provider.list_models()
    finally:
        await provider.aclose()
    assert provider.health.status.state == "unauthorized"
    assert fake.stats().models_requests == 1


async def test_stream_options_refused_once_then_never_sent_again(
    fake: FakeUpstream, keyed: OpenAICompatProvider
) -> None:
    """Issue 8, item 6: the refusal comes before any token, so asking again cannot generate
    twice (SPEC 9); the provider remembers, so later turns go straight through."""
    fake.set(reject_stream_options=True)

    first = await collect(keyed)
    second = await collect(keyed)

    assert "".join(c.text for c in first) == "Echo: Hello there"
    assert "".join(c.text for c in second) == "Echo: Hello there"
    assert ["stream_options" in r for r in fake.requests] == [True, False, False]
    # The fake counts a stream as completed just after its last byte: wait for it.
    stats = await fake.wait_for(lambda s: s.completed == 2)
    assert stats.rejected == 1
    assert first[-1].finish_reason == "stop" and first[-1].usage is None


async def test_another_400_is_not_retried(fake: FakeUpstream, keyed: OpenAICompatProvider) -> None:
    fake.set(strict_roles=True)
    with pytest.raises(ProviderError) as caught:
        await collect_messages(keyed, [{"role": "assistant", "content": "hi"}])
    assert caught.value.code == "upstream_error" and "alternate" in caught.value.message
    assert fake.stats().chat_requests == 1 and keyed.sends_usage_option


async def collect_messages(provider: Any, messages: list[dict[str, Any]]) -> list[Chunk]:
    return [c async for c in provider.stream_chat(model="fake-model", messages=messages)]


@pytest.mark.parametrize("form", ["reasoning_content", "reasoning", "think"])
async def test_reasoning_arrives_apart_from_the_text(
    fake: FakeUpstream, keyed: OpenAICompatProvider, form: str
) -> None:
    """Issue 8, item 4: vLLM/DeepSeek ``reasoning_content``, OpenRouter ``reasoning`` and a
    leading ``<think>`` block (its tags split across chunks) all become ``Chunk.reasoning``."""
    thinking = "The user greets me.\nI should greet back; <b> is not a tag."
    fake.set(reply="Hi! <think> stays text here.", reasoning=thinking, reasoning_format=form)
    fake.set(chunk_chars=3)

    chunks = await collect(keyed)

    assert "".join(c.reasoning for c in chunks) == thinking
    assert "".join(c.text for c in chunks) == "Hi! <think> stays text here."
    assert chunks[-1].finish_reason == "stop"


@given(
    st.text(alphabet="ab<>/thinkT \n", max_size=40),
    st.text(alphabet="ab<>/think \n", max_size=40),
    st.lists(st.integers(min_value=1, max_value=9), max_size=30),
)
def test_think_splitter_is_independent_of_chunk_boundaries(
    thought: str, answer: str, cuts: list[int]
) -> None:
    whole = f"<think>{thought}</think>\n\n{answer}"
    if "</think>" in thought:
        return  # the first closing tag ends the block, by definition
    pieces, at = [], 0
    for size in cuts:
        pieces.append(whole[at : at + size])
        at += size
    pieces.append(whole[at:])
    splitter = ThinkSplitter()
    reasoning, text = "", ""
    for piece in pieces:
        r, t = splitter.feed(piece)
        reasoning, text = reasoning + r, text + t
    r, t = splitter.flush()
    assert (reasoning + r, text + t) == (thought, answer.lstrip())


def test_a_reply_that_does_not_start_thinking_is_all_text() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("  <thi") == ("", "")
    assert splitter.feed("s is not a tag") == ("", "  <this is not a tag")
    assert splitter.feed("<think>") == ("", "<think>")


async def test_a_slow_first_token_is_waited_for_but_idle_silence_is_not(
    fake: FakeUpstream,
) -> None:
    """Issue 8, item 5: a long prefill (first token after 1 s) passes with a 0.3 s idle
    timeout; a stream that then falls silent for longer than that ends as upstream_timeout."""
    patient = OpenAICompatProvider(
        name="local", base_url=fake.base_url, first_token_timeout_s=20, idle_timeout_s=0.3
    )
    try:
        fake.set(reply="slow start", ttft_s=1.0)
        assert "".join(c.text for c in await collect(patient)) == "slow start"
        fake.set(reply="aaaabbbb", chunk_chars=4, ttft_s=0, token_interval_s=2.0)
        got: list[Chunk] = []
        with pytest.raises(ProviderError) as caught:
            async for chunk in patient.stream_chat(model="fake-model", messages=HELLO):
                got.append(chunk)
        assert caught.value.code == "upstream_timeout" and "nothing for 0.3 s" in str(caught.value)
        assert "".join(c.text for c in got) == "aaaa"
    finally:
        await patient.aclose()
    await fake.wait_for(lambda s: s.abandoned == 1)


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        ({"id": "text-embedding-3-small"}, "embedding"),
        ({"id": "nomic-embed-text:latest"}, "embedding"),
        ({"id": "BAAI/bge-m3"}, "embedding"),
        ({"id": "my-model", "details": {"family": "nomic-bert"}}, "embedding"),
        ({"id": "whisper-1"}, "audio"),
        ({"id": "tts-1-hd"}, "audio"),
        ({"id": "dall-e-3"}, "image"),
        ({"id": "gpt-image-1"}, "image"),
        ({"id": "omni-moderation-latest"}, "moderation"),
        ({"id": "llama-guard3:8b"}, "moderation"),
        ({"id": "x", "mode": "embedding"}, "embedding"),
        ({"id": "gpt-4o"}, "chat"),
        ({"id": "qwen3:30b-a3b"}, "chat"),
        ({"id": "deepseek-r1:14b", "details": {"family": "qwen2"}}, "chat"),
    ],
)
def test_model_kinds_from_metadata_or_name(entry: dict[str, Any], kind: str) -> None:
    assert model_kind(entry) == kind


async def test_the_default_is_the_first_chat_model_unless_configured(fake: FakeUpstream) -> None:
    """Issue 8, item 3: a gateway that lists an embedding or image model first does not make
    it the default; CHATKEEP_DEFAULT_MODEL wins over any listing."""
    fake.set(models=["text-embedding-3-small", "dall-e-3", "whisper-1", "llama3", "gpt-4o"])
    for default, expected in [("", "llama3"), ("gpt-4o", "gpt-4o")]:
        providers = Providers(
            [OpenAICompatProvider(name="gw", base_url=fake.base_url), DemoProvider()],
            default_model=default,
        )
        try:
            await providers.list_models()
            assert providers.default_id() == expected
            assert providers.resolve(None)[1] == expected
        finally:
            await providers.aclose()


async def test_several_providers_from_a_settings_file(fake: FakeUpstream, tmp_path: Path) -> None:
    """Issue 8, item 7: a TOML list of providers (name, base URL, key, allow-list, headers,
    timeouts); models are provider:model; keys and header values never appear in the
    settings' text."""
    fake.set(require_key=KEY)
    config = tmp_path / "chatkeep.toml"
    config.write_text(
        f"""
demo_model = false
ollama_autodetect = false
[[providers]]
name = "local"
base_url = "{fake.base_url}"
api_key = "{KEY}"
first_token_timeout_s = 900
[[providers]]
name = "cloud"
base_url = "{fake.base_url}"
api_key = "{KEY}"
models = ["fake-model-mini"]
headers = {{ "X-Gateway-Token" = "hdr-secret-value" }}
"""
    )
    settings = Settings(config=config)
    assert KEY not in repr(settings) and "hdr-secret-value" not in repr(settings)
    assert KEY not in settings.model_dump_json()
    providers = await Providers.from_settings(settings)
    try:
        models = await providers.list_models()
        assert [providers.public_id(m.provider, m.id) for m in models] == [
            "local:fake-model",
            "local:fake-model-mini",
            "cloud:fake-model-mini",
        ]
        provider, model = providers.resolve("cloud:fake-model-mini")
        assert (provider.name, model) == ("cloud", "fake-model-mini")
        assert isinstance(provider, OpenAICompatProvider)
        assert provider.first_token_timeout_s == 600 and provider.idle_timeout_s == 120
        local = providers.resolve("local:fake-model")[0]
        assert isinstance(local, OpenAICompatProvider) and local.first_token_timeout_s == 900
        assert "".join(c.text for c in await collect(provider, model)) == "Echo: Hello there"
        assert {p.health.status.state for p in providers.all} == {"ok"}
    finally:
        await providers.aclose()


def test_health_backs_off_and_a_successful_turn_does_not_postpone_the_listing() -> None:
    health = Health(ok_ttl_s=0.05, backoff_min_s=3600, backoff_max_s=7200)
    health.ok()
    deadline = time.monotonic() + 5
    while not health.due:  # the listing's minute (here 50 ms) has passed
        assert time.monotonic() < deadline
        time.sleep(0.01)
    health.answered()  # turns keep flowing: new models must still show up
    assert health.due and health.status.state == "ok"

    health.failed("unreachable", "down")
    assert not health.due and health.status.state == "unreachable"
    health.answered()  # it is back: list again now, the last-seen models may be stale
    assert health.due and health.status.state == "ok"
