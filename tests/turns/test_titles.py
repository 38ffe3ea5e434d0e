"""A chat gets a title from its first message at once, and, with CHATKEEP_TITLE_FROM_MODEL, a
better one from the model after the first reply — unless the user renamed it meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from turnkit import TurnStack, eventually, get_session, send_turn, turn_body

from support.factories import new_id
from support.fake_upstream import FakeUpstream


async def test_model_title_replaces_the_first_message_title(
    start_stack: Callable[..., TurnStack], fake: FakeUpstream
) -> None:
    stack = start_stack(title_from_model=True)
    fake.set(reply="Lisbon day trip")
    sid = new_id()
    async with stack.client() as api:
        await send_turn(api, sid, turn_body("Plan a day in Lisbon with fado", session={}))

        async def titled() -> Any:
            return (await get_session(api, sid))["title"] == "Lisbon day trip"

        await eventually(titled)
    prompts = [r["messages"][-1]["content"] for r in fake.requests]
    assert len(prompts) == 2 and "short title" in prompts[1]


async def test_model_title_never_overwrites_a_rename(
    start_stack: Callable[..., TurnStack], fake: FakeUpstream
) -> None:
    stack = start_stack(title_from_model=True)
    fake.set(reply="Model title", ttft_s=0.3)
    sid = new_id()
    async with stack.client() as api:
        body = turn_body("Plan a day in Lisbon", session={})
        async with api.stream("POST", f"/api/sessions/{sid}/turns", json=body) as response:
            assert response.status_code == 200
            renamed = await api.patch(f"/api/sessions/{sid}", json={"title": "Mine"})
            assert renamed.status_code == 200
            async for _ in response.aiter_lines():
                pass
        await fake.wait_for(lambda s: s.completed == 2, timeout=10)

        async def title_task_done() -> bool:
            return not stack.turns.busy

        await eventually(title_task_done, what="the title task to finish")
        assert (await get_session(api, sid))["title"] == "Mine"
