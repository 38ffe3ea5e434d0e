"""Open WebUI 0.12.x as a peer over HTTP: its own server process (its own virtualenv), an account
from its signup API, and its web UI's save call, ``POST /api/v1/chats/{id}`` with the whole chat.

Its SQLite database is set to the same durability as chatkeep's (WAL is its default;
``DATABASE_SQLITE_PRAGMA_SYNCHRONOUS=FULL``). Everything that would reach past loopback (model
servers, embedding downloads, update checks) is switched off.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support.server import free_port


def _message(i: int, parent: str | None, text: str) -> dict[str, Any]:
    role = "user" if i % 2 == 0 else "assistant"
    return {
        "id": str(uuid.uuid4()),
        "parentId": parent,
        "childrenIds": [],
        "role": role,
        "content": text,
        "timestamp": int(time.time()),
        **({"models": ["bench"]} if role == "user" else {"model": "bench", "done": True}),
    }


@dataclass
class Chat:
    """A chat as the Open WebUI page holds it: the history tree and the active path."""

    id: str = ""
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        parent = self.path[-1] if self.path else None
        msg = _message(len(self.path), parent, text)
        if parent is not None:
            self.messages[parent]["childrenIds"].append(msg["id"])
        self.messages[msg["id"]] = msg
        self.path.append(msg["id"])

    def body(self) -> dict[str, Any]:
        return {
            "chat": {
                "title": "bench",
                "models": ["bench"],
                "params": {},
                "history": {
                    "messages": self.messages,
                    "currentId": self.path[-1] if self.path else None,
                },
                "messages": [self.messages[m] for m in self.path],
                "tags": [],
                "timestamp": int(time.time() * 1000),
            }
        }


@dataclass
class OpenWebUI:
    venv: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        data = self.workdir / "owui-data"
        data.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATKEEP_")}
        # The wheel ships its built page inside the package; without this it looks beside it.
        frontend = next(self.venv.glob("lib/python3*/site-packages/open_webui/frontend"), None)
        if frontend is not None:
            env["FRONTEND_BUILD_DIR"] = str(frontend)
        env.update(
            DATA_DIR=str(data),
            DATABASE_URL=f"sqlite:///{data / 'webui.db'}",
            DATABASE_SQLITE_PRAGMA_SYNCHRONOUS="FULL",
            WEBUI_SECRET_KEY="bench-secret",
            WEBUI_AUTH="true",
            ENABLE_SIGNUP="true",
            ENABLE_OLLAMA_API="false",
            ENABLE_OPENAI_API="false",
            OFFLINE_MODE="true",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            RAG_EMBEDDING_MODEL_AUTO_UPDATE="false",
            RAG_RERANKING_MODEL_AUTO_UPDATE="false",
            ENABLE_VERSION_UPDATE_CHECK="false",
            ANONYMIZED_TELEMETRY="false",
            DO_NOT_TRACK="true",
            SCARF_NO_ANALYTICS="true",
            GLOBAL_LOG_LEVEL="WARNING",
        )
        return env

    async def __aenter__(self) -> OpenWebUI:
        log = open(self.workdir / "owui.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                str(self.venv / "bin" / "uvicorn"),
                "open_webui.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            env=self.env(),
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        await self._wait_ready(timeout_s=240)
        self.client = httpx.AsyncClient(base_url=self.url, timeout=120)
        signup = await self.client.post(
            "/api/v1/auths/signup",
            json={"name": "bench", "email": "bench@example.invalid", "password": "bench-pass-1"},
        )
        signup.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {signup.json()['token']}"
        return self

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=5) as probe:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    tail = (self.workdir / "owui.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"Open WebUI exited with {self.proc.returncode}:\n{tail}")
                try:
                    if (await probe.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(1)
        raise RuntimeError(f"Open WebUI did not answer within {timeout_s:.0f} s")

    async def __aexit__(self, *_exc: object) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    async def new_chat(self, held: int, text: str) -> Chat:
        assert self.client is not None
        chat = Chat()
        for _ in range(held):
            chat.add(text)
        response = await self.client.post("/api/v1/chats/new", json=chat.body())
        response.raise_for_status()
        chat.id = response.json()["id"]
        return chat

    async def append(self, chat: Chat, text: str) -> None:
        """What the page does when a message is sent: the whole chat, saved again."""
        assert self.client is not None
        chat.add(text)
        response = await self.client.post(f"/api/v1/chats/{chat.id}", json=chat.body())
        response.raise_for_status()

    async def load(self, chat: Chat) -> int:
        assert self.client is not None
        response = await self.client.get(f"/api/v1/chats/{chat.id}")
        response.raise_for_status()
        return len(response.json()["chat"]["messages"])
