"""LangChain's ``SQLChatMessageHistory``, driven over stdin/stdout by ``bench.peers``.

Runs in its own virtualenv (langchain-community, SQLAlchemy, psycopg), never imports chatkeep.
One JSON object per line in, one per line out; each timed call is measured here, around the
library call alone, so the pipe costs nothing in the figures.

    {"cmd": "setup", "url": ..., "chats": {"name": n_messages, ...}}
    {"cmd": "append", "chat": name}      -> {"s": seconds}
    {"cmd": "load", "chat": name}        -> {"s": seconds, "n": messages loaded}
    {"cmd": "quit"}
"""

from __future__ import annotations

import json
import sys
import time
import uuid
import warnings
from typing import Any

warnings.simplefilter("ignore", DeprecationWarning)  # langchain-community announces its sunset

from langchain_community.chat_message_histories import SQLChatMessageHistory  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from sqlalchemy import create_engine, event  # noqa: E402

TEXT = "How do I keep a chat history durable? " * 4


def engine_for(url: str) -> Any:
    if url.startswith("sqlite"):
        engine = create_engine(url)

        @event.listens_for(engine, "connect")
        def _durable(dbapi_connection: Any, _record: Any) -> None:
            # The same durability as chatkeep's: WAL, an fsync at every commit.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        return engine
    # PostgreSQL: the cluster runs with fsync and synchronous_commit on.
    return create_engine(url)


def main() -> None:
    histories: dict[str, SQLChatMessageHistory] = {}
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        if cmd == "quit":
            break
        if cmd == "setup":
            engine = engine_for(req["url"])
            for name, count in req["chats"].items():
                history = SQLChatMessageHistory(
                    session_id=f"{name}-{uuid.uuid4()}", connection=engine
                )
                batch = [
                    (HumanMessage if i % 2 == 0 else AIMessage)(content=TEXT) for i in range(count)
                ]
                for start in range(0, len(batch), 1000):
                    history.add_messages(batch[start : start + 1000])
                histories[name] = history
            out: dict[str, Any] = {"ok": True}
        elif cmd == "append":
            history = histories[req["chat"]]
            message = HumanMessage(content=TEXT)
            started = time.perf_counter()
            history.add_message(message)
            out = {"s": time.perf_counter() - started}
        elif cmd == "load":
            history = histories[req["chat"]]
            started = time.perf_counter()
            loaded = history.messages
            out = {"s": time.perf_counter() - started, "n": len(loaded)}
        else:
            out = {"error": f"unknown command {cmd}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
