"""Real gateways at the turn level (issue 8), on SQLite and PostgreSQL: a provider with a bad key
or none at all is a state in ``/api/models`` and a precise error event, never a 422 for a model
that exists; it is used again once it is back, without a restart; a failed reply does not break
the chat for a model whose template needs alternating roles; a slow first token gets keep-alive
comments; several providers at once, without ever showing their keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from turnkit import (
    FAKE_MODEL,
    TurnStack,
    eventually,
    open_turn,
    reply_id_of,
    send_turn,
    stored,
    turn_body,
)

from chatkeep.turns.context import alternating
from support.factories import new_id
from support.fake_upstream import FakeUpstream
from support.server import free_port
from support.sse import delta_text, names

SECRET = "sk-wrong-but-secret-4242"


async def models(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/api/models")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_bad_key_is_a_provider_state_and_an_upstream_unauthorized_turn(
    fake: FakeUpstream, start_stack: Callable[..., TurnStack]
) -> None:
    """Issue 8, item 1: the configured model is not "unknown"; the turn ends with
    upstream_unauthorized; once the gateway takes the key, no restart is needed."""
    fake.set(require_key="sk-the-right-one")
    stack = start_stack(openai_api_key=SECRET, provider_recheck_min_s=0.05)
    async with stack.client() as api:
        listing = await models(api)
        (provider,) = listing["providers"]
        assert provider["name"] == "openai" and provider["state"] == "unauthorized"
        assert "Incorrect API key" in provider["message"] and provider["checked_at"]
        sid, body = new_id(), turn_body("hello?", session={})
        events = await send_turn(api, sid, body)
        assert names(events) == ["message", "start", "error"]
        assert events[-1].json["code"] == "upstream_unauthorized"
        assert SECRET not in events[-1].data

        fake.set(require_key=SECRET)

        async def recovered() -> bool:
            listing = await models(api)
            return listing["providers"][0]["state"] == "ok"

        await eventually(recovered, what="the provider to be ok again", interval=0.1)
        events = await send_turn(api, sid, turn_body("and now?"))
        # The failed reply had no text: the two user messages reach the model as one (item 2).
        assert delta_text(events) == "Echo: hello?\n\nand now?"
        for path in ("/api/models", f"/api/sessions/{sid}", "/openapi.json"):
            assert SECRET not in (await api.get(path)).text


async def test_a_failing_provider_keeps_its_models_listed_as_last_seen(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """A key revoked while chatkeep runs: the turn says upstream_unauthorized, and the
    models stay in the list, marked unavailable, instead of vanishing."""
    fake.set(require_key="rotated")
    sid, body = new_id(), turn_body("hi", session={})
    events = await send_turn(api, sid, body)
    assert events[-1].event == "error" and events[-1].json["code"] == "upstream_unauthorized"
    listing = await models(api)
    assert listing["providers"][0]["state"] == "unauthorized"
    assert [(m["id"], m["available"]) for m in listing["models"]] == [
        ("fake-model", False),
        ("fake-model-mini", False),
    ]
    fake.set(require_key=None)
    events = await send_turn(api, sid, turn_body("again"))
    assert events[-1].event == "done"
    assert (await models(api))["providers"][0]["state"] == "ok"


async def test_an_unreachable_gateway_is_upstream_unavailable_not_unknown_model(
    start_stack: Callable[..., TurnStack],
) -> None:
    stack = start_stack(openai_base_url=f"http://127.0.0.1:{free_port()}/v1")
    async with stack.client() as api:
        listing = await models(api)
        assert listing["providers"][0]["state"] == "unreachable"
        assert listing["default"] == FAKE_MODEL
        sid, body = new_id(), turn_body("anyone?", session={})
        async with open_turn(api, sid, body) as stream:
            assert stream.status_code == 200
            events = await stream.rest()
        assert events[-1].json["code"] == "upstream_unavailable"
        assert (await stored(api, sid, reply_id_of(body)))["status"] == "error"


async def test_a_failed_empty_reply_does_not_break_a_strict_template(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """Issue 8, item 2: after an error reply with no text, the next prompt would hold two user
    messages in a row, which Mistral and Gemma templates refuse (so would every later turn).
    The two are merged; the upstream sees user/assistant turns taking turns."""
    fake.set(strict_roles=True)
    sid = new_id()
    await send_turn(api, sid, turn_body("one", session={}))
    fake.set(fail_status=500, fail_times=1)
    failed = await send_turn(api, sid, turn_body("two"))
    assert failed[-1].json["code"] == "upstream_error" and delta_text(failed) == ""

    events = await send_turn(api, sid, turn_body("three"))
    assert events[-1].event == "done", events[-1].data
    assert fake.requests[-1]["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Echo: one"},
        {"role": "user", "content": "two\n\nthree"},
    ]
    events = await send_turn(api, sid, turn_body("four"))
    assert events[-1].event == "done"
    assert fake.stats().rejected == 0


async def test_a_slow_first_token_gets_keep_alive_comments_and_no_timeout(
    fake: FakeUpstream, start_stack: Callable[..., TurnStack]
) -> None:
    """Issue 8, item 5: a local model that needs longer than the idle timeout for its first
    token is waited for; meanwhile the client gets SSE comments, so proxies keep it open."""
    stack = start_stack(sse_keepalive_s=0.2, upstream_timeout_s=0.5)
    fake.set(ttft_s=2.0, reply="worth the wait")
    async with stack.client() as api:
        sid, body = new_id(), turn_body("think hard", session={})
        lines: list[str] = []
        async with api.stream("POST", f"/api/sessions/{sid}/turns", json=body) as response:
            async for line in response.aiter_lines():
                lines.append(line)
    first_delta = lines.index("event: delta")
    assert sum(line.startswith(":") for line in lines[:first_delta]) >= 3
    assert "event: done" in lines and "worth the wait" in "".join(lines)


async def test_several_providers_are_listed_and_chosen_as_provider_model(
    fake: FakeUpstream, start_stack: Callable[..., TurnStack]
) -> None:
    """Issue 8, item 7: two gateways (here the same fake twice), one with an allow-list and a
    key; ids are provider:model, a chat keeps its provider, keys are never returned."""
    fake.set(require_key=SECRET)
    stack = start_stack(
        openai_base_url="",
        default_model="",
        providers=[
            {"name": "local", "base_url": fake.base_url, "api_key": SECRET},
            {
                "name": "cloud",
                "base_url": fake.base_url,
                "api_key": SECRET,
                "models": ["fake-model-mini"],
                "headers": {"X-Org": "org-secret-77"},
            },
        ],
    )
    async with stack.client() as api:
        response = await api.get("/api/models")
        assert SECRET not in response.text and "org-secret-77" not in response.text
        listing = response.json()
        assert [m["id"] for m in listing["models"]] == [
            "local:fake-model",
            "local:fake-model-mini",
            "cloud:fake-model-mini",
        ]
        assert listing["default"] == "local:fake-model"
        assert [p["name"] for p in listing["providers"]] == ["local", "cloud"]
        sid, body = new_id(), turn_body("hi", session={"model": "cloud:fake-model-mini"})
        events = await send_turn(api, sid, body)
        assert events[-1].event == "done"
        assert (await stored(api, sid, reply_id_of(body)))["model"] == "cloud:fake-model-mini"
        assert fake.requests[-1]["model"] == "fake-model-mini"


async def test_the_default_model_skips_embedding_and_image_models(
    fake: FakeUpstream, start_stack: Callable[..., TurnStack]
) -> None:
    """Issue 8, item 3: the gateway lists an embedding and an image model first."""
    fake.set(models=["text-embedding-3-small", "dall-e-3", "fake-model-mini", "fake-model"])
    stack = start_stack(default_model="")
    async with stack.client() as api:
        listing = await models(api)
        assert listing["default"] == "fake-model-mini"
        kinds = {m["id"]: m["kind"] for m in listing["models"]}
        assert kinds["text-embedding-3-small"] == "embedding" and kinds["dall-e-3"] == "image"
        events = await send_turn(api, new_id(), turn_body("which?", session={}))
        assert events[-1].event == "done" and fake.requests[-1]["model"] == "fake-model-mini"


def test_prompt_roles_alternate_whatever_the_path_holds() -> None:
    """Issue 8, item 2, on the pure function: system messages first as one, an assistant
    greeting before any user message left out, same-role neighbours merged (text or parts)."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    path: list[dict[str, Any]] = [
        {"role": "assistant", "content": "Hi, I am the imported greeting."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}, image]},
        {"role": "assistant", "content": "partial answer"},
        {"role": "system", "content": "Answer in French."},
        {"role": "assistant", "content": "more"},
        {"role": "user", "content": "three"},
    ]
    assert alternating(path) == [
        {"role": "system", "content": "Be brief.\n\nAnswer in French."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}, image],
        },
        {"role": "assistant", "content": "partial answer\n\nmore"},
        {"role": "user", "content": "three"},
    ]
    assert alternating([{"role": "user", "content": "x"}]) == [{"role": "user", "content": "x"}]
