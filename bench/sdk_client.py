"""The SDK's own cost: one append through ``chatkeep.Client`` (keep-alive, retries armed, ids
made client-side, the answer parsed into a ``Message``) against the same ``PUT`` sent through a
bare ``httpx.Client``, timed interleaved on one server; the same for ``AsyncClient`` against
``httpx.AsyncClient``. Then the import rate of ``chatkeep import``'s code path (parse, session
creates, atomic batches) for a generated ChatGPT export of 10,000 messages with branches.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bench._common import Context, RatioAtMost, Result, Rows, interleaved
from bench._fixtures import TEXT, serve, setup_users
from chatkeep import AsyncClient, Client
from chatkeep.cli.import_formats import load_export
from chatkeep.cli.importing import import_chat
from support.factories import new_id

NAME = "sdk_client"
TITLE = "SDK append vs bare httpx, and import rate"
CAPTION = (
    "Target: an append through Client / AsyncClient <= 1.2x the same PUT through bare httpx "
    "(p50, keep-alive both). Import: messages/s of a generated ChatGPT export (one sample)."
)
BARE = "bare httpx.Client PUT"
SDK = "Client.messages.append"
ABARE = "bare httpx.AsyncClient PUT"
ASDK = "AsyncClient.messages.append"
IMPORT = "import a ChatGPT export"


async def run(ctx: Context) -> list[Result]:
    n, warmup = ctx.scale(400, 40), ctx.scale(40, 5)
    url = ctx.new_database("sdk")
    db, accounts = await setup_users(url, "bench")
    user = accounts["bench"]
    body = {"role": "user", "content": TEXT}
    try:
        async with serve(url, ctx.workdir, user) as srv:
            sid = new_id()
            await srv.call("PUT", f"/api/sessions/{sid}", 201, json={"title": "sdk"})
            bare = httpx.Client(base_url=srv.url, headers=user.headers, timeout=60)
            abare = httpx.AsyncClient(base_url=srv.url, headers=user.headers, timeout=60)
            ck = Client(base_url=srv.url, api_key=user.key)
            ack = AsyncClient(base_url=srv.url, api_key=user.key)

            def check(response: httpx.Response) -> None:
                if response.status_code != 201:
                    raise RuntimeError(f"bare PUT: {response.status_code} {response.text}")

            async def bare_put() -> None:
                check(bare.put(f"/api/sessions/{sid}/messages/{new_id()}", json=body))

            async def sdk_append() -> None:
                ck.messages.append(sid, role="user", content=TEXT)

            async def abare_put() -> None:
                check(await abare.put(f"/api/sessions/{sid}/messages/{new_id()}", json=body))

            async def asdk_append() -> None:
                await ack.messages.append(sid, role="user", content=TEXT)

            try:
                samples = await interleaved(
                    {BARE: bare_put, SDK: sdk_append, ABARE: abare_put, ASDK: asdk_append},
                    n=n,
                    warmup=warmup,
                )
                total = ctx.scale(10_000, 1_000)
                export = json.dumps(chatgpt_export(total)).encode()
                began = time.perf_counter()
                chats = load_export(export)
                for chat in chats:
                    import_chat(ck, chat, lambda _: None)
                samples[IMPORT] = [time.perf_counter() - began]
            finally:
                bare.close()
                ck.close()
                await abare.aclose()
                await ack.aclose()
    finally:
        await db.dispose()
    rows = Rows(NAME, ctx.db)
    rows.add(BARE, samples[BARE], layer="http", note="baseline")
    rows.add(SDK, samples[SDK], layer="sdk", vs=BARE, targets=[RatioAtMost(BARE, 1.2)])
    rows.add(ABARE, samples[ABARE], layer="http", note="baseline")
    rows.add(ASDK, samples[ASDK], layer="sdk", vs=ABARE, targets=[RatioAtMost(ABARE, 1.2)])
    seconds = samples[IMPORT][0]
    rows.add(
        IMPORT,
        samples[IMPORT],
        layer="sdk",
        note=f"{total:,} messages in {len(chats)} chats: {total / seconds:,.0f} messages/s",
    )
    return rows.results


def chatgpt_export(total: int, per_chat: int = 100) -> list[dict[str, Any]]:
    """``total`` messages shaped like ChatGPT's export: chats of ``per_chat`` messages, a null
    root each, alternating user/assistant, every tenth reply regenerated (a branch)."""
    chats = []
    for c in range(total // per_chat):
        mapping: dict[str, Any] = {
            "root": {"id": "root", "message": None, "parent": None, "children": []}
        }
        parent, made = "root", 0
        while made < per_chat:
            nid = f"n{made}"
            role = "user" if made % 2 == 0 else "assistant"
            mapping[nid] = _node(nid, parent, role, f"{role} message {made} of chat {c}. {TEXT}")
            mapping[parent]["children"].append(nid)
            made += 1
            if role == "assistant" and made % 10 == 0 and made < per_chat:
                alt = f"{nid}-alt"
                mapping[alt] = _node(alt, parent, role, f"another take on {made}")
                mapping[parent]["children"].append(alt)
                made += 1
            parent = nid
        chats.append(
            {
                "title": f"chat {c}",
                "create_time": 1_700_000_000.0 + c,
                "mapping": mapping,
                "current_node": parent,
                "conversation_id": f"bench-{c}-{new_id()}",
            }
        )
    return chats


def _node(nid: str, parent: str, role: str, text: str) -> dict[str, Any]:
    message = {
        "id": nid,
        "author": {"role": role},
        "create_time": 1_700_000_000.0,
        "content": {"content_type": "text", "parts": [text]},
        "metadata": {},
    }
    return {"id": nid, "message": message, "parent": parent, "children": []}
