"""What the CLI tests share: running ``chatkeep`` as a subprocess with its own (empty) config
directory, and real-shaped exports of ChatGPT and Open WebUI to import.

Imported by name (``from clikit import ...``) because tests/cli has no ``__init__.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.server import REPO


@dataclass
class Cli:
    """``chatkeep`` with this server and key, and a config directory of its own."""

    url: str
    key: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATKEEP_")}
        env.update(XDG_CONFIG_HOME=str(self.home / "config"), COLUMNS="200", **extra)
        return env

    def run(
        self, *args: str, stdin: str = "", flags: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        given = ["--url", self.url, "--api-key", self.key] if flags else []
        return subprocess.run(
            [sys.executable, "-m", "chatkeep.cli", *given, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(**env),
            cwd=REPO,
            timeout=60,
        )


def _node(
    nid: str,
    parent: str | None,
    children: list[str],
    role: str | None = None,
    parts: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    message = None
    if role is not None:
        content_type = extra.pop("content_type", "text")
        message = {
            "id": nid,
            "author": {"role": role, "name": None, "metadata": {}},
            "create_time": 1_700_000_000.125 + len(nid),  # a fraction: kept to the µs
            "update_time": None,
            "content": {"content_type": content_type, "parts": parts or []},
            "status": "finished_successfully",
            "end_turn": True,
            "weight": 1.0,
            "metadata": extra.pop("metadata", {}),
            "recipient": "all",
        }
    return {"id": nid, "message": message, "parent": parent, "children": children}


def chatgpt_export() -> list[dict[str, Any]]:
    """Two conversations shaped like ChatGPT's ``conversations.json``: a null root, a hidden
    empty system node, a regenerated reply (a branch), an image the export only points to, a
    tool node, and the current node at the end of one branch."""
    mapping = {
        "root": _node("root", None, ["sys"]),
        "sys": _node(
            "sys",
            "root",
            ["u1"],
            "system",
            [""],
            metadata={"is_visually_hidden_from_conversation": True},
        ),
        "u1": _node("u1", "sys", ["a1", "a1b"], "user", ["Plan a day in Lisbon"]),
        "a1": _node(
            "a1",
            "u1",
            ["u2"],
            "assistant",
            ["Start in **Alfama**."],
            metadata={"model_slug": "gpt-4o"},
        ),
        "a1b": _node(
            "a1b", "u1", [], "assistant", ["Start in Belém."], metadata={"model_slug": "gpt-4o"}
        ),
        "u2": _node(
            "u2",
            "a1",
            ["t1"],
            "user",
            [
                {
                    "content_type": "image_asset_pointer",
                    "asset_pointer": "file-service://file-AbC123",
                    "size_bytes": 1234,
                    "width": 10,
                    "height": 10,
                },
                "Which tram is this?",
            ],
            content_type="multimodal_text",
        ),
        "t1": _node("t1", "u2", ["a2"], "tool", ["(image analysed)"]),
        "a2": _node("a2", "t1", [], "assistant", ["That is tram 28."]),
    }
    second = {
        "r": _node("r", None, ["q"]),
        "q": _node("q", "r", ["ans"], "user", ["hello"]),
        "ans": _node("ans", "q", [], "assistant", ["hi there"]),
    }
    return [
        {
            "title": "Lisbon",
            "create_time": 1_700_000_000.0,
            "update_time": 1_700_000_500.0,
            "mapping": mapping,
            "current_node": "a2",
            "conversation_id": "6a1b2c3d-0000-4000-8000-000000000001",
            "moderation_results": [],
        },
        {
            "title": "Greeting",
            "create_time": 1_700_001_000.0,
            "update_time": 1_700_001_000.0,
            "mapping": second,
            "current_node": "ans",
            "conversation_id": "6a1b2c3d-0000-4000-8000-000000000002",
        },
    ]


def open_webui_export() -> list[dict[str, Any]]:
    """One Open WebUI chat with a regenerated reply; currentId on the second branch."""
    messages = {
        "m1": {
            "id": "m1",
            "parentId": None,
            "childrenIds": ["m2", "m3"],
            "role": "user",
            "content": "Name a colour",
            "timestamp": 1_700_000_000,
        },
        "m2": {
            "id": "m2",
            "parentId": "m1",
            "childrenIds": [],
            "role": "assistant",
            "content": "Blue",
            "model": "llama3",
            "timestamp": 1_700_000_001,
        },
        "m3": {
            "id": "m3",
            "parentId": "m1",
            "childrenIds": [],
            "role": "assistant",
            "content": "Green",
            "model": "llama3",
            "timestamp": 1_700_000_002,
        },
    }
    return [
        {
            "id": "owui-chat-1",
            "user_id": "u",
            "title": "Colours",
            "chat": {
                "id": "",
                "title": "Colours",
                "models": ["llama3"],
                "history": {"messages": messages, "currentId": "m3"},
                "messages": list(messages.values()),
            },
            "created_at": 1_700_000_000,
            "updated_at": 1_700_000_002,
        }
    ]
