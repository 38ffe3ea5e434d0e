"""The public surface (STYLE: httpx's habit): ``chatkeep.__all__`` is sorted and complete, and
every name SPEC 6.1 writes exists on both clients with the same shape."""

from __future__ import annotations

import inspect

import chatkeep
from chatkeep.client import _errors

SPEC_METHODS = {
    "sessions": ["create", "get", "list", "update", "delete"],
    "messages": ["append", "append_many", "list"],
    "turns": ["send", "stream", "cancel"],
    "models": ["list"],
    "outbox": ["pending", "flush", "failed"],
}


def test_all_is_sorted_and_complete() -> None:
    assert chatkeep.__all__ == sorted(chatkeep.__all__)
    public = {
        name
        for name, value in vars(chatkeep).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public | {"__version__"} == set(chatkeep.__all__)
    for name in chatkeep.__all__:
        assert hasattr(chatkeep, name), name


def test_exception_tree_of_spec_6_1() -> None:
    by_status = {
        400: chatkeep.BadRequest,
        401: chatkeep.AuthenticationError,
        403: chatkeep.PermissionDenied,
        404: chatkeep.NotFound,
        409: chatkeep.Conflict,
        410: chatkeep.Gone,
        413: chatkeep.PayloadTooLarge,
        415: chatkeep.UnsupportedMediaType,
        422: chatkeep.UnprocessableEntity,
        429: chatkeep.RateLimited,
    }
    assert by_status == _errors.BY_STATUS
    for kind in [*by_status.values(), chatkeep.ServerError]:
        assert issubclass(kind, chatkeep.APIError)
    assert issubclass(chatkeep.APIError, chatkeep.ChatkeepError)
    assert issubclass(chatkeep.APIConnectionError, chatkeep.ChatkeepError)
    assert issubclass(chatkeep.TurnError, chatkeep.ChatkeepError)
    err = chatkeep.NotFound(404, "not_found", "no such chat")
    assert (err.status, err.code, err.detail) == (404, "not_found", "no such chat")


def test_async_client_mirrors_client() -> None:
    """Same resources, same methods, same parameters; the async ones are coroutines or async
    iterators (SPEC 6.1: "the exact mirror")."""
    sync, asyn = chatkeep.Client(api_key="ck_x"), chatkeep.AsyncClient(api_key="ck_x")
    try:
        assert list(inspect.signature(chatkeep.Client).parameters) == list(
            inspect.signature(chatkeep.AsyncClient).parameters
        )
        for resource, methods in SPEC_METHODS.items():
            for method in methods:
                one = getattr(getattr(sync, resource), method)
                two = getattr(getattr(asyn, resource), method)
                assert list(inspect.signature(one).parameters) == list(
                    inspect.signature(two).parameters
                ), f"{resource}.{method}"
                if resource == "turns" and method == "stream":
                    continue  # returns the stream object itself in both
                async_kind = inspect.iscoroutinefunction(two) or inspect.isasyncgenfunction(two)
                assert async_kind, f"AsyncClient.{resource}.{method} is not async"
        assert list(inspect.signature(sync.search).parameters) == ["q", "limit"]
        stream = ["session_id", "content", "model", "id", "reply_id", "parent_id", "session"]
        assert list(inspect.signature(sync.turns.stream).parameters) == stream
        assert list(inspect.signature(sync.turns.send).parameters) == stream
        assert inspect.isasyncgenfunction(asyn.search)
    finally:
        sync.close()
