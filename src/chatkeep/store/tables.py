"""chatkeep's tables. Each fact is stored once; ids chosen by clients are idempotency keys.

Clients name sessions and messages with their own UUIDs. Those ids are unique per user, not
globally, so that one user's ids can never collide with, or reveal, another user's (G7).
Rows are joined by integer surrogate keys (``pk``), which SQLite stores as its rowid.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

PK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every database (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteDateTime())  # type: ignore[no-untyped-call]
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _SQLiteDateTime(sqlite.DATETIME):
    """SQLite's DATETIME, read back with ``datetime.fromisoformat`` (C) instead of a regular
    expression per value: a 1,000-message chat has 2,000 of them (issue 6). Written as before."""

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        parse = datetime.fromisoformat

        def process(value: str | None) -> datetime | None:
            return None if value is None else parse(value).replace(tzinfo=UTC)

        return process


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """API keys are 256-bit random tokens: a SHA-256 of one is as safe as argon2, and cheap to
    look up on every request. Passwords, which people choose, get argon2."""

    __tablename__ = "api_keys"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class WebSession(Base):
    """A browser's sign-in: the cookie holds a random token, the table its hash."""

    __tablename__ = "web_sessions"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class ChatSession(Base):
    """A chat. Deleting one keeps this row as a tombstone (``deleted_at``) so that a late retry
    of its creation answers 410 instead of bringing it back (G5)."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("user_pk", "id", name="uq_sessions_user_id"),
        Index(
            "ix_sessions_sidebar",
            "user_pk",
            "archived",
            "updated_at",
            "pk",
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"))
    id: Mapped[str] = mapped_column(String(36))
    title: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str | None] = mapped_column(String(200))
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    active_leaf_id: Mapped[str | None] = mapped_column(String(36))
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class Message(Base):
    """One message of a chat. ``seq`` numbers a session's messages 1, 2, 3, ... with no gaps;
    ``parent_id`` makes them a tree whose branches are edits and regenerations (G3)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("user_pk", "id", name="uq_messages_user_id"),
        UniqueConstraint("session_pk", "seq", name="uq_messages_session_seq"),
        # One generation per session at a time, enforced by the database (G4).
        Index(
            "uq_messages_one_streaming",
            "session_pk",
            unique=True,
            sqlite_where=text("status = 'streaming'"),
            postgresql_where=text("status = 'streaming'"),
        ),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    session_pk: Mapped[int] = mapped_column(ForeignKey("sessions.pk", ondelete="CASCADE"))
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"))
    id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger)
    parent_id: Mapped[str | None] = mapped_column(String(36))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[Any] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="complete")
    error: Mapped[dict[str, Any] | None]
    usage: Mapped[dict[str, Any] | None]
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Which process is generating this reply, and until when its claim holds (G2).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


class Blob(Base):
    """An uploaded image, stored once per user by content hash and served back with auth."""

    __tablename__ = "blobs"
    __table_args__ = (UniqueConstraint("user_pk", "sha256", name="uq_blobs_user_sha"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InstanceSetup(Base):
    """One row, written once: who claimed the first-run admin account, so two racing setups
    cannot both become admin."""

    __tablename__ = "instance_setup"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def table(model: type[Base]) -> Table:
    """The Core table behind a mapped class, typed as one (statements here are Core)."""
    return cast(Table, model.__table__)
