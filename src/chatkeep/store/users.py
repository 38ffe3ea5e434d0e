"""Accounts: users with argon2 passwords, API keys (``ck_…``, shown once), browser sign-ins."""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from chatkeep.problems import AlreadyExists, Invalid, NotFound
from chatkeep.store.tables import ApiKey, InstanceSetup, User, WebSession, table, utcnow

U = table(User)
K = table(ApiKey)
W = table(WebSession)
I = table(InstanceSetup)  # noqa: E741

_hasher = PasswordHasher()
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this keeps a sign-in for an unknown name as slow as for a known one."""
    return _hasher.hash("chatkeep-dummy-password")


@dataclass(frozen=True)
class Principal:
    user_pk: int
    name: str
    is_admin: bool
    # Set for browser sign-ins: unsafe methods must echo it in X-CSRF-Token.
    csrf_token: str | None = None


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise Invalid("a user name is 1-64 letters, digits, '_', '.', '@' or '-'", field="name")
    return name


def check_password(password: str) -> str:
    if not 8 <= len(password) <= 1024:
        raise Invalid("a password has 8 to 1024 characters", field="password")
    return password


def create_user(
    conn: Connection, *, name: str, password: str | None, admin: bool = False
) -> dict[str, Any]:
    """Create a user. The very first account becomes admin, whatever was asked."""
    check_name(name)
    password_hash = _hasher.hash(check_password(password)) if password is not None else None
    first = (conn.scalar(select(func.count()).select_from(U))) == 0
    try:
        with conn.begin_nested():
            pk = conn.scalar(
                insert(U)
                .values(name=name, password_hash=password_hash, is_admin=admin or first)
                .returning(U.c.pk)
            )
    except IntegrityError as exc:
        raise AlreadyExists(f"user {name} exists") from exc
    if first:
        # Two racing first accounts: only one row here, so only one claims the instance.
        try:
            with conn.begin_nested():
                conn.execute(insert(I).values(id=1, user_pk=pk))
        except IntegrityError:
            conn.execute(update(U).where(U.c.pk == pk).values(is_admin=admin))
    row = (conn.execute(select(U).where(U.c.pk == pk))).one()
    return {"name": row.name, "is_admin": row.is_admin, "created_at": row.created_at}


def count_users(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(U)) or 0)


def list_users(conn: Connection) -> list[dict[str, Any]]:
    rows = (conn.execute(select(U).order_by(U.c.pk))).all()
    return [{"name": r.name, "is_admin": r.is_admin, "created_at": r.created_at} for r in rows]


def user_pk(conn: Connection, name: str) -> int:
    pk = conn.scalar(select(U.c.pk).where(U.c.name == name))
    if pk is None:
        raise NotFound(f"no user {name}")
    return int(pk)


def set_password(conn: Connection, *, name: str, password: str) -> None:
    pk = user_pk(conn, name)
    hashed = _hasher.hash(check_password(password))
    conn.execute(update(U).where(U.c.pk == pk).values(password_hash=hashed))
    conn.execute(delete(W).where(W.c.user_pk == pk))


def delete_user(conn: Connection, *, name: str) -> None:
    conn.execute(delete(U).where(U.c.pk == user_pk(conn, name)))


def verify_password(conn: Connection, *, name: str, password: str) -> Principal | None:
    row = (conn.execute(select(U).where(U.c.name == name))).first()
    try:
        _hasher.verify(row.password_hash if row and row.password_hash else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.password_hash is None:
        return None
    return Principal(row.pk, row.name, row.is_admin)


def create_api_key(conn: Connection, *, user_name: str, name: str) -> dict[str, Any]:
    """Returns the key itself, once; only its hash is stored."""
    pk = user_pk(conn, user_name)
    key = "ck_" + secrets.token_urlsafe(32)
    conn.execute(insert(K).values(user_pk=pk, name=name, prefix=key[:10], key_hash=sha256_hex(key)))
    return {"name": name, "prefix": key[:10], "key": key}


def list_api_keys(conn: Connection, *, user_name: str) -> list[dict[str, Any]]:
    pk = user_pk(conn, user_name)
    rows = (conn.execute(select(K).where(K.c.user_pk == pk).order_by(K.c.pk))).all()
    return [
        {
            "name": r.name,
            "prefix": r.prefix,
            "created_at": r.created_at,
            "revoked": bool(r.revoked_at),
        }
        for r in rows
    ]


def revoke_api_key(conn: Connection, *, user_name: str, prefix: str) -> int:
    pk = user_pk(conn, user_name)
    result = conn.execute(
        update(K)
        .where(K.c.user_pk == pk, K.c.prefix == prefix, K.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)


def principal_for_api_key(conn: Connection, key: str) -> Principal | None:
    stmt = (
        select(U.c.pk, U.c.name, U.c.is_admin)
        .join(K, K.c.user_pk == U.c.pk)
        .where(K.c.key_hash == sha256_hex(key), K.c.revoked_at.is_(None))
    )
    row = conn.execute(stmt).first()
    return Principal(row.pk, row.name, row.is_admin) if row else None


def start_web_session(conn: Connection, *, user: Principal, days: int) -> tuple[str, str]:
    """A new browser sign-in: ``(cookie token, csrf token)``."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    conn.execute(
        insert(W).values(
            user_pk=user.user_pk,
            token_hash=sha256_hex(token),
            csrf_token=csrf,
            expires_at=utcnow() + timedelta(days=days),
        )
    )
    return token, csrf


def principal_for_web_session(conn: Connection, token: str) -> Principal | None:
    stmt = (
        select(U.c.pk, U.c.name, U.c.is_admin, W.c.csrf_token)
        .join(W, W.c.user_pk == U.c.pk)
        .where(W.c.token_hash == sha256_hex(token), W.c.expires_at > utcnow())
    )
    row = conn.execute(stmt).first()
    return Principal(row.pk, row.name, row.is_admin, row.csrf_token) if row else None


def end_web_session(conn: Connection, token: str) -> None:
    conn.execute(delete(W).where(W.c.token_hash == sha256_hex(token)))
