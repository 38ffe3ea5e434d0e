"""``chatkeep import FILE`` (SPEC 6.2): a ChatGPT or Open WebUI export into your chats.

The file is parsed whole first (``import_formats``), so a malformed one imports nothing. Each
chat is then one session create and one atomic batch per 500 messages (G9), all with ids derived
from the source's, so a second import of the same file is a replay that changes nothing, and an
import that stopped half-way (a lost connection) is completed by running it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chatkeep import Client, Conflict, Gone
from chatkeep.cli._connect import clean_errors, err, fail, open_client
from chatkeep.cli.import_formats import (
    ImportedChat,
    ImportedMessage,
    ImportFormatError,
    load_export,
)

# One batch is one transaction (G9), so a chat of up to BATCH_ITEMS messages is imported all or
# nothing; the server's default max_batch_items is 500 and its body limit 16 MiB.
BATCH_ITEMS = 500
BATCH_CHARS = 3_000_000


def batches(messages: Sequence[ImportedMessage]) -> Iterator[list[ImportedMessage]]:
    batch: list[ImportedMessage] = []
    size = 0
    for message in messages:
        if batch and (len(batch) >= BATCH_ITEMS or size + len(message.content) > BATCH_CHARS):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += len(message.content)
    if batch:
        yield batch


def import_chat(client: Client, chat: ImportedChat, advance: Callable[[int], None]) -> bool:
    """One chat: replays of what an earlier import wrote change nothing. False when the chat
    was deleted since an earlier import: a deleted id never comes back (G5)."""
    try:
        created = client.sessions.create(id=chat.id, title=chat.title, created_at=chat.created_at)
        leaf = created.active_leaf_id
    except Conflict:
        leaf = client.sessions.get(chat.id).active_leaf_id  # renamed since the last import
    except Gone:
        advance(len(chat.messages))
        return False
    for batch in batches(chat.messages):
        items = [m.item() for m in batch]
        try:
            client.messages.append_many(chat.id, items)
        except Conflict:
            # Imported by a version that did not send the source's times: the same batch
            # without them is that import's replay (a real conflict stays one).
            client.messages.append_many(chat.id, [{**i, "created_at": None} for i in items])
        advance(len(batch))
    # The source's current node is the active leaf (SPEC 6.2); set only when it differs, so a
    # second import does not even touch updated_at.
    if chat.active_leaf_id and leaf != chat.active_leaf_id:
        client.sessions.update(chat.id, active_leaf_id=chat.active_leaf_id)
    return True


def read_export(path: Path) -> list[ImportedChat]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    try:
        return load_export(raw)
    except ImportFormatError as exc:
        fail(f"{path}: {exc}; nothing was imported")


def import_command(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="conversations.json (ChatGPT) or an Open WebUI export.")
    ],
) -> None:
    """Import a ChatGPT or Open WebUI export; running it again changes nothing."""
    chats = read_export(file)
    total = sum(len(c.messages) for c in chats)
    client = open_client(ctx, max_retries=5, deadline=60.0)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with client, clean_errors(client), Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("importing messages", total=total)
        skipped = [c for c in chats if not import_chat(client, c, lambda n: bar.advance(task, n))]
    for chat in skipped:
        err.print(f"skipped {chat.title!r}: deleted since an earlier import ({chat.id})")
    done = len(chats) - len(skipped)
    count = total - sum(len(c.messages) for c in skipped)
    err.print(f"imported {done} chats ({count} messages) from {file}")
