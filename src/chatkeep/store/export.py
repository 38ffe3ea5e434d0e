"""All of one user's data as one JSON-ready archive: account, keys (never their hashes),
every chat with every branch, and the images (base64). Deleted chats are gone, so they are not
in it. One read transaction, so the archive is consistent as of one moment."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import Connection, select

from chatkeep.store.messages import message_public
from chatkeep.store.sessions import session_public
from chatkeep.store.tables import ApiKey, Blob, ChatSession, Message, User, table, utcnow

FORMAT, VERSION = "chatkeep-export", 1
U, K, S, M, B = table(User), table(ApiKey), table(ChatSession), table(Message), table(Blob)


def export_user(conn: Connection, user_pk: int) -> dict[str, Any]:
    user = conn.execute(select(U).where(U.c.pk == user_pk)).one()
    keys = conn.execute(select(K).where(K.c.user_pk == user_pk).order_by(K.c.pk)).all()
    chats = conn.execute(
        select(S).where(S.c.user_pk == user_pk, S.c.deleted_at.is_(None)).order_by(S.c.pk)
    ).all()
    rows = conn.execute(
        select(M, S.c.id.label("chat_id"))
        .join(S, S.c.pk == M.c.session_pk)
        .where(M.c.user_pk == user_pk, S.c.deleted_at.is_(None))
        .order_by(M.c.session_pk, M.c.seq)
    ).all()
    by_chat: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_chat.setdefault(row.chat_id, []).append(message_public(row, row.chat_id))
    blobs = conn.execute(select(B).where(B.c.user_pk == user_pk).order_by(B.c.pk)).all()
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": utcnow(),
        "user": {"name": user.name, "is_admin": user.is_admin, "created_at": user.created_at},
        "api_keys": [
            {
                "name": k.name,
                "prefix": k.prefix,
                "created_at": k.created_at,
                "revoked": bool(k.revoked_at),
            }
            for k in keys
        ],
        "sessions": [
            {**session_public(chat), "messages": by_chat.get(chat.id, [])} for chat in chats
        ],
        "blobs": [
            {
                "sha256": b.sha256,
                "media_type": b.media_type,
                "created_at": b.created_at,
                "data_base64": base64.b64encode(b.data).decode(),
            }
            for b in blobs
        ],
    }
