"""Messages form a tree (G3): edits and regenerations are branches, the session follows one
active path from root to leaf, and a parent must be a message of the same session."""

from __future__ import annotations

from typing import Any

import httpx

from support.factories import new_id
from support.stack import Stack

_ABSENT: Any = object()


class Chat:
    """One session of alice's, driven over HTTP."""

    def __init__(self, api: httpx.AsyncClient, sid: str) -> None:
        self.api, self.sid = api, sid

    @classmethod
    async def start(cls, api: httpx.AsyncClient) -> Chat:
        sid = new_id()
        assert (await api.put(f"/api/sessions/{sid}", json={})).status_code == 201
        return cls(api, sid)

    async def send(
        self, text: str, role: str = "user", parent_id: Any = _ABSENT, mid: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"role": role, "content": text}
        if parent_id is not _ABSENT:
            body["parent_id"] = parent_id
        return await self.api.put(f"/api/sessions/{self.sid}/messages/{mid or new_id()}", json=body)

    async def say(self, text: str, role: str = "user", parent_id: Any = _ABSENT) -> str:
        response = await self.send(text, role, parent_id)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def path(self) -> list[str]:
        """The contents along the active path, root to leaf."""
        session = (await self.api.get(f"/api/sessions/{self.sid}")).json()
        return [m["content"] for m in session["messages"]]

    async def leaf(self) -> str | None:
        session = (await self.api.get(f"/api/sessions/{self.sid}")).json()
        leaf: str | None = session["active_leaf_id"]
        return leaf

    async def everything(self) -> list[str]:
        page = (await self.api.get(f"/api/sessions/{self.sid}/messages")).json()
        return [m["content"] for m in page["messages"]]

    async def patch_leaf(self, leaf: str) -> httpx.Response:
        return await self.api.patch(f"/api/sessions/{self.sid}", json={"active_leaf_id": leaf})


async def test_edit_starts_a_branch_and_becomes_the_active_path(api: httpx.AsyncClient) -> None:
    """G3: a message whose parent is an earlier message (an edit) branches there, the session
    shows only the new path, the old branch is kept for sync, and the next message without a
    parent_id continues the edit rather than interleaving with the old branch."""
    chat = await Chat.start(api)
    await chat.say("u1")
    a1 = await chat.say("a1", "assistant")
    await chat.say("u2")
    await chat.say("a2", "assistant")

    edit = await chat.say("u2 edited", parent_id=a1)
    assert await chat.leaf() == edit
    assert await chat.path() == ["u1", "a1", "u2 edited"]
    reply = await chat.send("a2'", "assistant")
    assert (reply.json()["parent_id"], reply.json()["seq"]) == (edit, 6)
    assert await chat.path() == ["u1", "a1", "u2 edited", "a2'"]
    assert await chat.everything() == ["u1", "a1", "u2", "a2", "u2 edited", "a2'"]


async def test_regenerated_reply_is_a_sibling(api: httpx.AsyncClient) -> None:
    """G3, SPEC 4: a second reply to the same user message hangs beside the first, not after it."""
    chat = await Chat.start(api)
    question = await chat.say("question")
    await chat.say("answer 1", "assistant")
    second = await chat.send("answer 2", "assistant", parent_id=question)
    assert second.json()["parent_id"] == question
    assert await chat.path() == ["question", "answer 2"]


async def test_patch_active_leaf_switches_branches(api: httpx.AsyncClient) -> None:
    """Switching back to an older branch shows that branch, and new messages continue it."""
    chat = await Chat.start(api)
    root = await chat.say("root")
    old = await chat.say("old branch", "assistant")
    await chat.say("new branch", "assistant", parent_id=root)

    switched = await chat.patch_leaf(old)
    assert (switched.status_code, switched.json()["active_leaf_id"]) == (200, old)
    assert await chat.path() == ["root", "old branch"]
    follow_up = await chat.send("more on the old branch")
    assert follow_up.json()["parent_id"] == old
    assert await chat.path() == ["root", "old branch", "more on the old branch"]


async def test_explicit_null_parent_starts_a_new_root(api: httpx.AsyncClient) -> None:
    """parent_id: null (unlike an absent parent_id) starts a new root in the same session."""
    chat = await Chat.start(api)
    await chat.say("first tree")
    response = await chat.send("second tree", parent_id=None)
    assert (response.status_code, response.json()["parent_id"]) == (201, None)
    assert await chat.path() == ["second tree"]
    assert await chat.everything() == ["first tree", "second tree"]


async def test_parent_outside_the_session_is_invalid_parent(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    """G3, G7: a parent_id or active_leaf_id naming a message of another session, another
    user's message, or nothing at all is 422 invalid_parent, and changes nothing."""
    chat, elsewhere = await Chat.start(api), await Chat.start(api)
    await chat.say("mine")
    leaf_before = await chat.leaf()
    foreign = await elsewhere.say("in another chat")
    async with stack.client(stack.bob) as bob:
        bobs = await (await Chat.start(bob)).say("bob's")

    strangers = {"other session": foreign, "other user": bobs, "unknown": new_id()}
    for name, stranger in strangers.items():
        for response in (
            await chat.send("child", parent_id=stranger),
            await chat.patch_leaf(stranger),
        ):
            assert response.status_code == 422, (name, response.text)
            assert response.json()["code"] == "invalid_parent"
    assert await chat.everything() == ["mine"]
    assert await chat.leaf() == leaf_before
    assert await elsewhere.everything() == ["in another chat"]
