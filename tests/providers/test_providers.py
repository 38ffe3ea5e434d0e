"""Providers against a real HTTP upstream on loopback: the text arrives intact, each upstream
failure becomes its stable ``ProviderError`` code, nothing is requested twice (SPEC 9), and a
cancelled turn hangs up on the model."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatkeep.providers import Chunk, Provider, ProviderError, Providers, UnknownModel
from chatkeep.providers.demo import DemoProvider
from chatkeep.providers.ollama import OllamaProvider, detect
from chatkeep.providers.openai_compat import OpenAICompatProvider
from chatkeep.settings import OpenAIProvider, Settings
from support.fake_upstream import FakeUpstream, run_fake_upstream

REPO = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as upstream:
        yield upstream


@pytest.fixture
async def provider(fake: FakeUpstream) -> AsyncIterator[OpenAICompatProvider]:
    upstream = OpenAICompatProvider(
        name="fake", base_url=fake.base_url, first_token_timeout_s=5, idle_timeout_s=5
    )
    yield upstream
    await upstream.aclose()


def closed_port() -> int:
    """A loopback port that nothing listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def collect(
    provider: Provider,
    messages: list[dict[str, Any]] = HELLO,
    model: str = "fake-model",
    into: list[Chunk] | None = None,
) -> list[Chunk]:
    chunks = [] if into is None else into
    async for chunk in provider.stream_chat(model=model, messages=messages):
        chunks.append(chunk)
    return chunks


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks)


async def test_streamed_text_equals_the_upstream_reply_byte_for_byte(
    fake: FakeUpstream, provider: OpenAICompatProvider
) -> None:
    reply = 'Zwölf Boxkämpfer 🥊 jagen Viktor\n\n```py\nprint("ok")\n```\n  trailing  '
    fake.set(reply=reply, chunk_chars=3)

    chunks = await collect(provider)

    assert text_of(chunks) == reply
    assert len(chunks) > 10
    *text_chunks, last = chunks
    assert all(c.finish_reason is None and c.usage is None for c in text_chunks)
    assert last.text == "" and last.finish_reason == "stop"
    assert last.usage is not None and last.usage["completion_tokens"] == len(text_chunks)
    (sent,) = fake.requests
    assert sent["messages"] == HELLO and sent["model"] == "fake-model"
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_default_fake_reply_echoes_the_last_user_message(
    fake: FakeUpstream, provider: OpenAICompatProvider
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]
    assert text_of(await collect(provider, messages)) == "Echo: second"


async def test_time_to_first_token_and_token_interval_are_observed(
    fake: FakeUpstream, provider: OpenAICompatProvider
) -> None:
    fake.set(reply="aaaabbbbccccdddd", chunk_chars=4, ttft_s=0.3, token_interval_s=0.05)
    arrivals: list[float] = []
    start = time.monotonic()
    async for chunk in provider.stream_chat(model="fake-model", messages=HELLO):
        if chunk.text:
            arrivals.append(time.monotonic() - start)

    assert len(arrivals) == 4
    assert arrivals[0] >= 0.3
    assert arrivals[-1] - arrivals[0] >= 3 * 0.05 * 0.9  # timer slack


@pytest.mark.parametrize(
    ("status", "code"), [(429, "upstream_rate_limited"), (500, "upstream_error")]
)
async def test_bad_status_maps_to_its_code_after_exactly_one_request(
    fake: FakeUpstream, provider: OpenAICompatProvider, status: int, code: str
) -> None:
    """The SDK's default retries would send this twice and could generate twice (SPEC 9).
    Only the first request fails, so a hidden retry would succeed and hide the error."""
    fake.set(fail_status=status, fail_times=1)

    with pytest.raises(ProviderError) as caught:
        await collect(provider)

    assert (caught.value.code, caught.value.status) == (code, status)
    assert fake.stats().chat_requests == 1
    assert text_of(await collect(provider)) == "Echo: Hello there"


@pytest.mark.parametrize("knob", ["hang", "ttft_s"])
async def test_a_silent_upstream_times_out_and_is_hung_up_on(fake: FakeUpstream, knob: str) -> None:
    """hang: no response at all; ttft_s: headers, then silence longer than the timeout."""
    fake.set(**{knob: 30.0 if knob == "ttft_s" else True})
    impatient = OpenAICompatProvider(
        name="fake", base_url=fake.base_url, first_token_timeout_s=0.3, idle_timeout_s=0.3
    )
    try:
        with pytest.raises(ProviderError) as caught:
            await collect(impatient)
    finally:
        await impatient.aclose()

    assert caught.value.code == "upstream_timeout"
    await fake.wait_for(lambda s: s.abandoned == 1)


@pytest.mark.parametrize(("cut_after", "received"), [(2, "abcdefgh"), (3, "abcdefghijkl")])
async def test_a_cut_stream_is_broken_after_yielding_what_arrived(
    fake: FakeUpstream, provider: OpenAICompatProvider, cut_after: int, received: str
) -> None:
    """Cut mid-text, or after the last text chunk but before any finish: either way the reply
    is not known to be whole."""
    fake.set(reply="abcdefghijkl", chunk_chars=4, cut_after_chunks=cut_after)
    chunks: list[Chunk] = []

    with pytest.raises(ProviderError) as caught:
        await collect(provider, into=chunks)

    assert caught.value.code == "upstream_stream_broken"
    assert text_of(chunks) == received
    assert all(c.finish_reason is None for c in chunks)
    assert fake.stats().cut == 1


async def test_connection_refused_is_upstream_unavailable() -> None:
    nowhere = OpenAICompatProvider(name="x", base_url=f"http://127.0.0.1:{closed_port()}/v1")
    try:
        with pytest.raises(ProviderError) as caught:
            await collect(nowhere)
    finally:
        await nowhere.aclose()
    assert caught.value.code == "upstream_unavailable"


async def test_cancelling_a_stream_hangs_up_on_the_upstream(
    fake: FakeUpstream, provider: OpenAICompatProvider
) -> None:
    fake.set(reply="word " * 200, chunk_chars=5, token_interval_s=0.05)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream_chat(model="fake-model", messages=HELLO):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stats = await fake.wait_for(lambda s: s.abandoned == 1, timeout=5)
    assert stats.completed == 0 and stats.active == 0


@pytest.mark.parametrize("knob", ["hang", "ttft_s"])
async def test_cancelling_before_the_first_token_hangs_up_on_the_upstream(
    fake: FakeUpstream, provider: OpenAICompatProvider, knob: str
) -> None:
    """hang: cancelled while waiting for the headers; ttft_s: after them, before any token."""
    fake.set(**{knob: 30.0 if knob == "ttft_s" else True})
    task = asyncio.create_task(collect(provider))
    await fake.wait_for(lambda s: s.active == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stats = await fake.wait_for(lambda s: s.abandoned == 1, timeout=5)
    assert stats.active == 0


async def test_closing_the_iterator_early_hangs_up_on_the_upstream(
    fake: FakeUpstream, provider: OpenAICompatProvider
) -> None:
    fake.set(reply="word " * 200, chunk_chars=5, token_interval_s=0.05)
    async with aclosing(provider.stream_chat(model="fake-model", messages=HELLO)) as stream:
        async for _ in stream:
            break
    stats = await fake.wait_for(lambda s: s.abandoned == 1, timeout=5)
    assert stats.completed == 0


async def test_models_are_listed_from_the_endpoint_and_cached(
    fake: FakeUpstream, provider: OpenAICompatProvider
) -> None:
    fake.set(models=["m-large", "m-small"])

    first = await provider.list_models()
    again = await provider.list_models()

    assert [(m.id, m.provider, m.is_demo) for m in first] == [
        ("m-large", "fake", False),
        ("m-small", "fake", False),
    ]
    assert again == first
    assert fake.stats().models_requests == 1


async def test_configured_models_are_an_allow_list_offered_as_configured(
    fake: FakeUpstream,
) -> None:
    """The allow-list is offered whatever the endpoint lists; the endpoint is still asked,
    once, for its state (issue 8, item 1)."""
    listed = OpenAICompatProvider(
        name="fake", base_url=fake.base_url, models=["only-this", "fake-model"]
    )
    try:
        assert [m.id for m in await listed.list_models()] == ["only-this", "fake-model"]
        assert [m.id for m in await listed.list_models()] == ["only-this", "fake-model"]
        assert listed.health.status.state == "ok"
    finally:
        await listed.aclose()
    assert fake.stats().models_requests == 1


async def test_a_failing_listing_is_empty_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    down = OpenAICompatProvider(name="down", base_url=f"http://127.0.0.1:{closed_port()}/v1")
    try:
        assert await down.list_models() == []
    finally:
        await down.aclose()
    assert "provider down is unreachable" in caplog.text


@pytest.fixture
async def registry(fake: FakeUpstream) -> AsyncIterator[Providers]:
    providers = Providers(
        [
            OpenAICompatProvider(name="fake", base_url=fake.base_url),
            OpenAICompatProvider(
                name="other", base_url=fake.base_url, models=["fake-model", "other-only"]
            ),
            DemoProvider(delay_s=0),
        ]
    )
    await providers.list_models()
    yield providers
    await providers.aclose()


async def test_registry_lists_every_provider_qualified_with_demo_last(
    registry: Providers,
) -> None:
    """With several providers the same model on two of them is two choices, listed as
    provider:model (issue 8, item 7); the demo keeps its plain id."""
    models = await registry.list_models()
    assert [registry.public_id(m.provider, m.id) for m in models] == [
        "fake:fake-model",
        "fake:fake-model-mini",
        "other:fake-model",
        "other:other-only",
        "demo",
    ]
    assert [m.is_demo for m in models] == [False, False, False, False, True]


async def test_registry_resolves_plain_and_qualified_ids(registry: Providers) -> None:
    def resolved(model_id: str | None) -> tuple[str, str]:
        provider, model = registry.resolve(model_id)
        return provider.name, model

    assert resolved("fake-model") == ("fake", "fake-model")  # the first provider wins
    assert resolved("other:fake-model") == ("other", "fake-model")
    assert resolved("other-only") == ("other", "other-only")
    assert resolved("demo") == ("demo", "demo")
    assert resolved(None) == ("fake", "fake-model")
    for unknown in ["nope", "nobody:fake-model", "fake:"]:
        with pytest.raises(UnknownModel):
            registry.resolve(unknown)


async def test_registry_default_model_and_no_models() -> None:
    demo_first = Providers([DemoProvider()], default_model="demo")
    await demo_first.list_models()
    assert demo_first.resolve(None)[1] == "demo"
    with pytest.raises(UnknownModel):
        Providers([]).resolve(None)
    with pytest.raises(ValueError, match="named 'demo'"):
        Providers([DemoProvider(), DemoProvider()])


async def test_from_settings_finds_the_configured_endpoint_ollama_and_demo(
    fake: FakeUpstream,
) -> None:
    with run_fake_upstream() as local_ollama:
        local_ollama.set(models=["llama3:8b", "fake-model"])
        settings = Settings(
            openai_base_url=fake.base_url,
            openai_api_key="sk-test",
            ollama_url=local_ollama.url,
            ollama_autodetect=True,
            demo_model=True,
            upstream_timeout_s=5,
        )
        providers = await Providers.from_settings(settings)
        try:
            models = await providers.list_models()
            ollama, model = providers.resolve("llama3:8b")
            reply = text_of(await collect(ollama, model=model))
            assert providers.resolve("ollama:fake-model")[0] is ollama
        finally:
            await providers.aclose()

        assert [(m.id, m.provider) for m in models] == [
            ("fake-model", "openai"),
            ("fake-model-mini", "openai"),
            ("llama3:8b", "ollama"),
            ("fake-model", "ollama"),
            ("demo", "demo"),
        ]
        assert isinstance(ollama, OllamaProvider) and reply == "Echo: Hello there"
        assert local_ollama.stats().tags_requests == 2  # detection, then the listing
        assert local_ollama.requests[0]["model"] == "llama3:8b"


async def test_an_ollama_already_configured_by_address_is_not_added_twice(
    fake: FakeUpstream,
) -> None:
    settings = Settings(openai_base_url=fake.base_url, ollama_url=fake.url, demo_model=False)
    providers = await Providers.from_settings(settings)
    try:
        assert {m.provider for m in await providers.list_models()} == {"openai"}
    finally:
        await providers.aclose()
    assert fake.stats().tags_requests == 0


async def test_two_providers_with_one_name_are_refused_at_start(fake: FakeUpstream) -> None:
    """Both default to the name "openai", and "openai:model" would be ambiguous."""
    settings = Settings(
        openai_base_url=fake.base_url, providers=[OpenAIProvider(base_url=fake.base_url)]
    )
    with pytest.raises(ValueError, match="named 'openai'"):
        await Providers.from_settings(settings)


async def test_from_settings_without_ollama_offers_the_demo_alone() -> None:
    settings = Settings(ollama_url=f"http://127.0.0.1:{closed_port()}", ollama_autodetect=True)
    providers = await Providers.from_settings(settings)
    try:
        assert [m.id for m in await providers.list_models()] == ["demo"]
        assert providers.resolve(None)[1] == "demo"
    finally:
        await providers.aclose()


async def test_ollama_detection_is_quick_when_nothing_listens(fake: FakeUpstream) -> None:
    start = time.monotonic()
    assert await detect(f"http://127.0.0.1:{closed_port()}") is False
    assert time.monotonic() - start < 1.0
    assert await detect(fake.base_url) is False  # answers, but has no /api/tags
    assert await detect(fake.url) is True


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo model must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


async def test_demo_streams_the_same_words_for_the_same_message(no_network: None) -> None:
    demo = DemoProvider(delay_s=0.005)
    messages = [{"role": "user", "content": "Can you write some code to greet me?"}]
    start = time.monotonic()
    first = await collect(demo, messages, model="demo")
    elapsed = time.monotonic() - start
    second = await collect(DemoProvider(delay_s=0), messages, model="demo")

    assert first == second
    *words, last = first
    assert len(words) > 10 and all(w.text.strip() and w.finish_reason is None for w in words)
    assert elapsed >= (len(words) - 1) * 0.005
    text = text_of(first)
    assert "> Can you write some code to greet me?" in text
    assert "```python" in text and "demo model" in text
    assert last.finish_reason == "stop" and last.usage is not None
    assert last.usage["completion_tokens"] == len(words)
    other = text_of(await collect(demo, [{"role": "user", "content": "Hi"}], model="demo"))
    assert other != text and "```" not in other


async def test_demo_reads_text_parts_and_counts_images(no_network: None) -> None:
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    text = text_of(await collect(DemoProvider(delay_s=0), [{"role": "user", "content": content}]))
    assert "> What is in this picture?" in text and "1 image" in text


def test_fake_upstream_runs_as_a_subprocess_driven_over_http() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_upstream", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        root = base_url.removesuffix("/v1")
        with httpx.Client(base_url=root, timeout=10) as http:
            http.post("/_control", json={"reset": True, "reply": "from afar"}).raise_for_status()
            body = {"model": "m", "stream": True, "messages": HELLO}
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                lines = [line for line in response.iter_lines() if line.startswith("data: {")]
            text = "".join(
                c["delta"].get("content", "")
                for line in lines
                for c in json.loads(line[6:])["choices"]
            )
            waited = http.post("/_wait", json={"field": "completed", "at_least": 1})
            assert text == "from afar" and waited.status_code == 200
            assert http.get("/_stats").json()["chat_requests"] == 1
            assert http.get("/_requests").json()[0]["messages"] == HELLO
            plain = http.post("/v1/chat/completions", json={**body, "stream": False}).json()
            assert plain["choices"][0]["message"]["content"] == "from afar"
            assert http.post("/_control", json={"no_such_knob": 1}).status_code == 422
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
