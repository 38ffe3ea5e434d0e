"""Models (SPEC 7): ``/api/models`` lists what the configured OpenAI-compatible endpoint offers
(and the offline demo when it is on); a turn asks the upstream for exactly the model chosen,
and a model nobody offers is a 422 before any stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from turnkit import (
    FAKE_MODEL,
    UNSET,
    TurnStack,
    get_session,
    open_turn,
    reply_id_of,
    send_turn,
    stored,
    turn_body,
)

from support.factories import new_id
from support.fake_upstream import DEFAULT_MODELS, FakeUpstream, run_fake_upstream
from support.server import free_port
from support.sse import delta_text, names


def listed(response: httpx.Response) -> list[tuple[str, str, bool]]:
    assert response.status_code == 200, response.text
    return [(m["id"], m["provider"], m["is_demo"]) for m in response.json()["models"]]


async def test_models_are_the_upstreams_listing(api: httpx.AsyncClient) -> None:
    """The fake's own ``/models`` ids, served by the ``openai`` provider; no demo when it is
    off; the default is the configured one."""
    response = await api.get("/api/models")

    assert listed(response) == [(m, "openai", False) for m in DEFAULT_MODELS]
    assert response.json()["default"] == FAKE_MODEL
    assert (await api.get("/api/models", headers={"Authorization": ""})).status_code == 401


async def test_models_come_from_chatkeep_openai_base_url_with_the_demo_last(
    monkeypatch: pytest.MonkeyPatch, fake: FakeUpstream, start_stack: Callable[..., TurnStack]
) -> None:
    """SPEC 7: CHATKEEP_OPENAI_BASE_URL and CHATKEEP_OPENAI_API_KEY from the environment are
    enough; the endpoint's models appear as it lists them, then the offline demo, named so."""
    monkeypatch.setenv("CHATKEEP_OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("CHATKEEP_OPENAI_API_KEY", "sk-test")
    fake.set(models=["alpha-7b", "beta-70b"])
    stack = start_stack(
        openai_base_url=UNSET, openai_api_key=UNSET, default_model="", demo_model=True
    )

    async with stack.client() as api:
        response = await api.get("/api/models")
        assert listed(response) == [
            ("alpha-7b", "openai", False),
            ("beta-70b", "openai", False),
            ("demo", "demo", True),
        ]
        assert response.json()["default"] == "alpha-7b"
        demo = next(m for m in response.json()["models"] if m["is_demo"])
        assert "demo" in demo["name"].lower() and "offline" in demo["name"].lower()


@pytest.mark.parametrize(
    ("turn_model", "session_model", "upstream_model"),
    [
        (None, None, FAKE_MODEL),
        ("fake-model-mini", None, "fake-model-mini"),
        (None, "fake-model-mini", "fake-model-mini"),
        ("fake-model", "fake-model-mini", "fake-model"),
        ("openai:fake-model-mini", None, "fake-model-mini"),
    ],
    ids=["default", "turn", "session", "turn-over-session", "qualified"],
)
async def test_the_model_asked_upstream_is_the_one_chosen(
    api: httpx.AsyncClient,
    fake: FakeUpstream,
    turn_model: str | None,
    session_model: str | None,
    upstream_model: str,
) -> None:
    """The turn's model, else the chat's, else the default; the reply records it."""
    session: dict[str, Any] = {"model": session_model} if session_model else {}
    sid, body = new_id(), turn_body("which model?", session=session, model=turn_model)

    events = await send_turn(api, sid, body)

    assert names(events)[-1] == "done"
    assert [r["model"] for r in fake.requests] == [upstream_model]
    assert (await stored(api, sid, reply_id_of(body)))["model"] == upstream_model


async def test_an_unknown_model_is_a_422_before_any_stream(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G8: a model no provider offers is refused before anything is stored: not the chat the
    turn would have created, not its message; the upstream is not asked."""
    for model in ("no-such-model", "nobody:fake-model"):
        sid, body = new_id(), turn_body("hello", session={}, model=model)
        async with open_turn(api, sid, body) as stream:
            assert stream.status_code == 422
            problem = await stream.problem()
        assert problem["code"] == "validation_error" and model in problem["detail"]
        assert (await api.get(f"/api/sessions/{sid}")).status_code == 404

    sid = new_id()
    await send_turn(api, sid, turn_body("first", session={}))
    async with open_turn(api, sid, turn_body("second", model="no-such-model")) as stream:
        assert stream.status_code == 422
    assert len((await get_session(api, sid))["messages"]) == 2
    assert fake.stats().chat_requests == 1


async def test_a_model_server_that_starts_after_chatkeep_is_used_once_it_is_up(
    start_stack: Callable[..., TurnStack],
) -> None:
    """SPEC 7: chatkeep and its model server start together; if the model server answers a
    moment later, the configured default model must still work when it does."""
    port = free_port()
    stack = start_stack(openai_base_url=f"http://127.0.0.1:{port}/v1")
    with run_fake_upstream(port=port) as late:
        late.set(reply="here now")
        async with stack.client() as api:
            sid, body = new_id(), turn_body("are you up?", session={})
            async with open_turn(api, sid, body) as stream:
                assert stream.status_code == 200, await stream.response.aread()
                events = await stream.rest()
    assert delta_text(events) == "here now"
