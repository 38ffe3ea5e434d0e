"""The built-in offline model (SPEC 7): canned replies, so the page works with no model, no key
and no network. Its name says so, and its text depends only on the last user message, which
makes it usable in tests as well."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncGenerator
from typing import Any

from chatkeep.providers.base import Chunk, ModelInfo
from chatkeep.providers.health import Health

DEMO_MODEL = ModelInfo(
    id="demo", provider="demo", name="Demo (offline, canned replies)", is_demo=True
)

_OPENERS = (
    "Thanks for your message.",
    "Got it.",
    "Here is a canned answer.",
    "Happy to help (in a pretend way).",
)
_CODE_WORDS = re.compile(r"\b(code|function|script|program|python|javascript|snippet)\b|```", re.I)
_TOKEN = re.compile(r"\s*\S+\s*")


def _text_of(content: Any) -> tuple[str, int]:
    """The text of a message's content and how many images it carries."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    images = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return " ".join(texts), images


def demo_reply(messages: list[dict[str, Any]]) -> str:
    """The reply to ``messages``: the same messages always get the same text."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    text, images = _text_of(last.get("content") if last else "")
    words = text.split()
    if not words and not images:
        return "The demo model heard nothing to reply to. Type a message and try again."
    digest = hashlib.sha256(text.encode()).digest()
    quote = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
    lines = [_OPENERS[digest[0] % len(_OPENERS)]]
    if quote:
        lines += ["", f"> {quote}", ""]
    lines += [
        "This is the **demo model**: it runs offline and answers with canned text, so you can "
        "try chatkeep without a real model. Configure a provider to get real answers.",
        "",
        f"- your message has {len(words)} words",
        f"- it is message {len(messages)} of this conversation",
    ]
    if images:
        lines.append(f"- it came with {images} image{'s' if images > 1 else ''}")
    if _CODE_WORDS.search(text):
        lines += ["", "```python", "def greet(name: str) -> str:", '    return f"Hello, {name}!"']
        lines += ["```"]
    return "\n".join(lines)


class DemoProvider:
    name = "demo"

    def __init__(self, *, delay_s: float = 0.025) -> None:
        self.delay_s = delay_s
        self.health = Health()
        self.health.ok()  # nothing to reach: always there

    async def list_models(self) -> list[ModelInfo]:
        return [DEMO_MODEL]

    async def stream_chat(
        self, *, model: str, messages: list[dict[str, Any]]
    ) -> AsyncGenerator[Chunk, None]:
        reply = demo_reply(messages)
        tokens = _TOKEN.findall(reply)
        for n, token in enumerate(tokens):
            # sleep(0) still yields to the loop, so a cancel lands between tokens.
            await asyncio.sleep(self.delay_s if n else 0)
            yield Chunk(token)
        prompt = sum(len(_text_of(m.get("content"))[0].split()) for m in messages)
        usage = {"prompt_tokens": prompt, "completion_tokens": len(tokens)}
        usage["total_tokens"] = prompt + len(tokens)
        yield Chunk("", usage=usage, finish_reason="stop")

    async def aclose(self) -> None:
        return None
