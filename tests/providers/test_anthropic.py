"""Anthropic's Messages API through the ``anthropic`` SDK (issue 8, item 7), against the fake
upstream speaking its SSE format: text and thinking arrive apart, the system prompt and images
are converted, a bad key is upstream_unauthorized and a provider state, nothing is retried."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator

import pytest

from chatkeep.providers import Chunk, ProviderError, Providers
from chatkeep.providers.anthropic import AnthropicProvider, to_anthropic
from chatkeep.providers.health import Health
from chatkeep.settings import ProviderConfig, Settings
from support.fake_upstream import FakeUpstream, run_fake_upstream

KEY = "sk-ant-test-0123456789"
PNG = base64.b64encode(b"\x89PNG fake").decode()


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream() as upstream:
        yield upstream


@pytest.fixture
async def claude(fake: FakeUpstream) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(
        name="claude",
        base_url=fake.base_url,
        api_key=KEY,
        health=Health(ok_ttl_s=0, backoff_min_s=0, backoff_max_s=0),
    )
    yield provider
    await provider.aclose()


async def collect(provider: AnthropicProvider, messages: list[dict[str, object]]) -> list[Chunk]:
    return [c async for c in provider.stream_chat(model="claude-x", messages=messages)]


async def test_text_and_thinking_stream_apart_with_usage(
    fake: FakeUpstream, claude: AnthropicProvider
) -> None:
    fake.set(
        require_key=KEY, reply="Bonjour à tous 👋", reasoning="Greet in French.", chunk_chars=3
    )
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Salut"},
    ]

    chunks = await collect(claude, messages)

    assert "".join(c.text for c in chunks) == "Bonjour à tous 👋"
    assert "".join(c.reasoning for c in chunks) == "Greet in French."
    last = chunks[-1]
    assert last.finish_reason == "end_turn" and last.usage is not None
    assert last.usage["completion_tokens"] == len(chunks) - 1
    (sent,) = fake.requests
    assert sent["system"] == "Be brief." and sent["messages"] == [
        {"role": "user", "content": "Salut"}
    ]
    assert sent["stream"] is True and sent["max_tokens"] > 0


async def test_a_bad_key_is_unauthorized_and_not_retried(
    fake: FakeUpstream, claude: AnthropicProvider
) -> None:
    fake.set(require_key="another-key")
    assert await claude.list_models() == []
    assert claude.health.status.state == "unauthorized"
    with pytest.raises(ProviderError) as caught:
        await collect(claude, [{"role": "user", "content": "hi"}])
    assert caught.value.code == "upstream_unauthorized" and KEY not in caught.value.message
    assert fake.stats().chat_requests == 1


async def test_models_are_listed_and_the_state_is_ok(
    fake: FakeUpstream, claude: AnthropicProvider
) -> None:
    fake.set(require_key=KEY, models=["claude-a", "claude-b"])
    assert [m.id for m in await claude.list_models()] == ["claude-a", "claude-b"]
    assert claude.health.status.state == "ok"


def test_openai_format_prompts_become_messages_api_turns() -> None:
    system, turns = to_anthropic(
        [
            {"role": "system", "content": "Rule one."},
            {"role": "system", "content": [{"type": "text", "text": "Rule two."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
        ]
    )
    assert system == "Rule one.\n\nRule two."
    assert turns == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            ],
        }
    ]


async def test_an_anthropic_provider_from_the_settings(fake: FakeUpstream) -> None:
    fake.set(require_key=KEY, models=["claude-a"])
    settings = Settings(
        demo_model=False,
        ollama_autodetect=False,
        providers=[ProviderConfig(name="claude", kind="anthropic", base_url=fake.url, api_key=KEY)],
    )
    providers = await Providers.from_settings(settings)
    try:
        provider, model = providers.resolve(None)
        assert isinstance(provider, AnthropicProvider) and model == "claude-a"
        assert "".join(c.text for c in await collect(provider, [{"role": "user", "content": "x"}]))
    finally:
        await providers.aclose()
