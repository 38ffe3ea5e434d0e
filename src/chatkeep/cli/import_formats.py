"""Reading other apps' exports into chatkeep's shape (SPEC 6.2 ``chatkeep import``): a ChatGPT
``conversations.json`` and an Open WebUI chat export, parsed whole before anything is written, so
a malformed file imports nothing.

Ids are UUIDv5 of the source's own ids, so importing the same file twice names the same rows and
the second time is a replay that changes nothing (G1). Messages come parents first (a depth-first
walk of the source's tree), each with an explicit ``parent_id``: branches stay branches. Nodes
that are not messages (ChatGPT's null roots), hidden or empty system nodes and tool output are
skipped, their children hung on the nearest kept ancestor. Images the export only references
(its files are not in ``conversations.json``) become a short text note.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Fixed forever: changing it would make a second import of the same file a new copy.
NAMESPACE = uuid.UUID("5b1f0c1e-3f4a-5c36-9a53-2f7c1d1b6a10")
ROLES = {"user", "assistant", "system"}


class ImportFormatError(ValueError):
    """The file is not an export we can read; nothing has been imported."""


@dataclass
class ImportedMessage:
    id: str
    parent_id: str | None
    role: str
    content: str
    model: str | None = None
    created_at: datetime | None = None

    def item(self) -> dict[str, Any]:
        """A batch item (``messages.append_many``)."""
        body: dict[str, Any] = {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "parent_id": self.parent_id,
        }
        if self.model:
            body["model"] = self.model[:200]
        if self.created_at is not None:
            body["created_at"] = self.created_at  # the source's date is kept (SPEC 6.2)
        return body


@dataclass
class ImportedChat:
    id: str
    title: str
    source: str
    messages: list[ImportedMessage] = field(default_factory=list)
    active_leaf_id: str | None = None
    created_at: datetime | None = None


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(parts)))


def _time(value: Any) -> datetime | None:
    """A source's epoch time, or None (then the server's now) for none or a nonsense one: the
    server refuses times in the future, and one bad stamp should not stop an import."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        # Open WebUI uses seconds, sometimes milliseconds.
        seconds = value / 1000 if value > 10**11 else value
        try:
            when = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
        return when if when <= datetime.now(UTC) else None
    return None


def parse_export(data: Any) -> list[ImportedChat]:
    """Every chat of a ChatGPT or Open WebUI export, or ``ImportFormatError``."""
    chats = [data] if isinstance(data, dict) else data
    if not isinstance(chats, list):
        raise ImportFormatError("expected a JSON list of conversations")
    parsed = []
    for n, chat in enumerate(chats, 1):
        if not isinstance(chat, dict):
            raise ImportFormatError(f"conversation {n}: expected an object")
        try:
            if "mapping" in chat:
                parsed.append(_chatgpt(chat))
            elif isinstance(chat.get("chat"), dict) and "history" in chat["chat"]:
                parsed.append(_open_webui(chat))
            else:
                raise ImportFormatError("neither a ChatGPT conversation nor an Open WebUI chat")
        except ImportFormatError as exc:
            raise ImportFormatError(f"conversation {n} ({chat.get('title')!r}): {exc}") from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ImportFormatError(
                f"conversation {n} ({chat.get('title')!r}): malformed ({type(exc).__name__}: {exc})"
            ) from None
    return parsed


def _walk(
    nodes: Mapping[str, Any],
    parent_of: Mapping[str, str | None],
    children_of: Mapping[str, list[str]],
) -> Iterable[str]:
    """Node ids parents first; roots are nodes whose parent is absent from the tree."""
    roots = [nid for nid in nodes if parent_of.get(nid) not in nodes]
    seen: set[str] = set()
    stack = list(reversed(roots))
    while stack:
        nid = stack.pop()
        if nid in seen:
            raise ImportFormatError(f"node {nid} is reachable twice (a cycle?)")
        seen.add(nid)
        yield nid
        stack.extend(reversed([c for c in children_of.get(nid, []) if c in nodes]))
    if len(seen) != len(nodes):
        raise ImportFormatError("the message tree has a cycle")


def _chatgpt_text(message: Mapping[str, Any]) -> str:
    content = message.get("content") or {}
    kind = content.get("content_type", "text")
    if kind in ("execution_output", "system_error"):
        return ""
    if "text" in content and isinstance(content["text"], str):
        return str(content["text"])
    pieces = []
    for part in content.get("parts") or []:
        if isinstance(part, str):
            pieces.append(part)
        elif isinstance(part, dict):
            if part.get("content_type") == "image_asset_pointer":
                pointer = str(part.get("asset_pointer", "")).rpartition("/")[2]
                pieces.append(f"[image not included in the export: {pointer or 'unnamed'}]")
            elif isinstance(part.get("text"), str):
                pieces.append(part["text"])
    return "\n".join(p for p in pieces if p)


def _keep(role: str, text: str, message: Mapping[str, Any]) -> bool:
    metadata = message.get("metadata") or {}
    if role not in ROLES or not text.strip():
        return False
    return not (role == "system" and metadata.get("is_visually_hidden_from_conversation"))


def _chatgpt(chat: Mapping[str, Any]) -> ImportedChat:
    source_id = str(chat.get("conversation_id") or chat.get("id") or "")
    if not source_id:
        raise ImportFormatError("no conversation_id")
    mapping: Mapping[str, Any] = chat["mapping"]
    if not isinstance(mapping, dict):
        raise ImportFormatError("mapping is not an object")
    parent_of = {nid: node.get("parent") for nid, node in mapping.items()}
    children_of = {nid: list(node.get("children") or []) for nid, node in mapping.items()}
    kept: dict[str, str | None] = {}  # node id -> its chatkeep id, or the kept ancestor's
    result = ImportedChat(
        id=derived_id("chatgpt", source_id),
        title=str(chat.get("title") or "Imported chat")[:500],
        source="chatgpt",
        created_at=_time(chat.get("create_time")),
    )
    for nid in _walk(mapping, parent_of, children_of):
        node = mapping[nid]
        parent = parent_of.get(nid)
        inherited = kept.get(parent) if parent is not None else None
        message = node.get("message")
        if not message:
            kept[nid] = inherited  # a null root, or an empty node
            continue
        role = str((message.get("author") or {}).get("role", ""))
        text = _chatgpt_text(message)
        if not _keep(role, text, message):
            kept[nid] = inherited
            continue
        mid = derived_id("chatgpt", source_id, nid)
        metadata = message.get("metadata") or {}
        result.messages.append(
            ImportedMessage(
                id=mid,
                parent_id=inherited,
                role=role,
                content=text,
                model=metadata.get("model_slug") if role == "assistant" else None,
                created_at=_time(message.get("create_time")),
            )
        )
        kept[nid] = mid
    current = chat.get("current_node")
    result.active_leaf_id = kept.get(current) if current else None
    if result.active_leaf_id is None and result.messages:
        result.active_leaf_id = result.messages[-1].id
    return result


def _open_webui(chat: Mapping[str, Any]) -> ImportedChat:
    body = chat["chat"]
    history = body["history"]
    nodes: Mapping[str, Any] = history.get("messages") or {}
    if not isinstance(nodes, dict):
        raise ImportFormatError("chat.history.messages is not an object")
    source_id = str(chat.get("id") or body.get("id") or "")
    if not source_id:
        raise ImportFormatError("no chat id")
    parent_of = {nid: node.get("parentId") for nid, node in nodes.items()}
    children_of = {nid: list(node.get("childrenIds") or []) for nid, node in nodes.items()}
    for nid, parent in parent_of.items():  # some exports only fill parentId
        if parent in children_of and nid not in children_of[parent]:
            children_of[parent].append(nid)
    kept: dict[str, str | None] = {}
    result = ImportedChat(
        id=derived_id("open-webui", source_id),
        title=str(chat.get("title") or body.get("title") or "Imported chat")[:500],
        source="open-webui",
        created_at=_time(chat.get("created_at")),
    )
    for nid in _walk(nodes, parent_of, children_of):
        node = nodes[nid]
        parent = parent_of.get(nid)
        inherited = kept.get(parent) if parent is not None else None
        role = str(node.get("role", ""))
        content = node.get("content")
        text = content if isinstance(content, str) else _parts_text(content)
        if role not in ROLES or not text.strip():
            kept[nid] = inherited
            continue
        mid = derived_id("open-webui", source_id, nid)
        result.messages.append(
            ImportedMessage(
                id=mid,
                parent_id=inherited,
                role=role,
                content=text,
                model=node.get("model") if role == "assistant" else None,
                created_at=_time(node.get("timestamp")),
            )
        )
        kept[nid] = mid
    current = history.get("currentId")
    result.active_leaf_id = kept.get(current) if current else None
    if result.active_leaf_id is None and result.messages:
        result.active_leaf_id = result.messages[-1].id
    return result


def _parts_text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def load_export(raw: bytes) -> list[ImportedChat]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFormatError(f"not valid JSON: {exc}") from None
    return parse_export(data)
