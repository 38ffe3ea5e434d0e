"""/api/auth: first-run set-up, browser sign-in and sign-out, and a user's own API keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from chatkeep.api.auth import CSRF_COOKIE, SESSION_COOKIE, current_user, principal_cache
from chatkeep.api.deps import CurrentUser, DbDep, SettingsDep
from chatkeep.api.schemas import AuthStatus, Credentials, KeyCreate, KeyCreated
from chatkeep.problems import AlreadyExists, NotFound, Problem, Unauthorized
from chatkeep.settings import Settings
from chatkeep.store import users
from chatkeep.store.tables import InstanceSetup, table
from chatkeep.store.users import Principal

router = APIRouter(prefix="/api/auth", tags=["auth"])
KeyPrefix = Annotated[str, Path(max_length=16, pattern=r"^[^\x00]*$")]


@router.get("/status", response_model=AuthStatus)
async def auth_status(request: Request, db: DbDep) -> dict[str, Any]:
    """Whether the instance still needs its first account, and who is signed in (if anyone)."""
    needs_setup = await db.read(users.count_users) == 0
    try:
        user: Principal | None = await current_user(request)
    except Problem:
        user = None
    return {
        "needs_setup": needs_setup,
        "user": {"name": user.name, "is_admin": user.is_admin} if user else None,
        "csrf_token": user.csrf_token if user else None,
    }


@router.post("/setup", response_model=AuthStatus, status_code=201)
async def setup(
    body: Credentials, db: DbDep, settings: SettingsDep, response: Response
) -> dict[str, Any]:
    """Create the first account, an admin, and sign it in. Refused once any account exists."""

    def work(conn: Any) -> Principal:
        if users.count_users(conn) > 0:
            raise AlreadyExists("this instance is already set up; sign in")
        users.create_user(conn, name=body.name, password=body.password, admin=True)
        principal = users.verify_password(conn, name=body.name, password=body.password)
        owner = conn.scalar(
            table(InstanceSetup).select().with_only_columns(table(InstanceSetup).c.user_pk)
        )
        if principal is None or owner != principal.user_pk:
            raise AlreadyExists("this instance is already set up; sign in")
        return principal

    principal = await db.write(work)
    return await _sign_in(db, settings, principal, response)


@router.post("/login", response_model=AuthStatus)
async def login(
    body: Credentials, request: Request, db: DbDep, settings: SettingsDep, response: Response
) -> dict[str, Any]:
    client = request.client.host if request.client else "?"
    request.app.state.login_limiter.hit(f"login:{client}:{body.name}")
    principal = await db.read(users.verify_password, name=body.name, password=body.password)
    if principal is None:
        raise Unauthorized("wrong name or password")
    return await _sign_in(db, settings, principal, response)


async def _sign_in(
    db: Any, settings: Settings, principal: Principal, response: Response
) -> dict[str, Any]:
    def work(conn: Any) -> tuple[str, str]:
        return users.start_web_session(conn, user=principal, days=settings.web_session_days)

    token, csrf = await db.write(work)
    max_age = settings.web_session_days * 86400
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, samesite="strict", secure=settings.cookie_secure
    )
    return {
        "needs_setup": False,
        "user": {"name": principal.name, "is_admin": principal.is_admin},
        "csrf_token": csrf,
    }


@router.post("/logout", status_code=204, response_class=Response)
async def logout(request: Request, user: CurrentUser, db: DbDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:

        def work(conn: Any) -> None:
            users.end_web_session(conn, token)

        await db.write(work)
        principal_cache(request).clear()
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


@router.post("/keys", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyCreate, user: CurrentUser, db: DbDep) -> dict[str, Any]:
    """A new API key for the signed-in user. The key is in this response only."""

    def work(conn: Any) -> dict[str, Any]:
        return users.create_api_key(conn, user_name=user.name, name=body.name)

    return await db.write(work)


@router.get("/keys")
async def list_keys(user: CurrentUser, db: DbDep) -> list[dict[str, Any]]:
    return await db.read(users.list_api_keys, user_name=user.name)


@router.delete("/keys/{prefix}", status_code=204, response_class=Response)
async def revoke_key(prefix: KeyPrefix, request: Request, user: CurrentUser, db: DbDep) -> Response:
    def work(conn: Any) -> int:
        return users.revoke_api_key(conn, user_name=user.name, prefix=prefix)

    revoked = await db.write(work)
    principal_cache(request).clear()
    if revoked == 0:
        raise NotFound(f"no active key {prefix}")
    return Response(status_code=204)
