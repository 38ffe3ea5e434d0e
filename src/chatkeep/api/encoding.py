"""JSON responses encoded once, by orjson, straight from the store's plain dicts (issue 6): no
response-model validation and no ``jsonable_encoder`` pass per row on the hot routes.

The dicts carry exactly the response models' fields (``message_public``, ``session_public``), so
the declared ``response_model`` still documents them; tests/guarantees/test_g8_schemathesis.py
checks every response against that schema. Datetimes come out as pydantic writes them
(RFC 3339, UTC as ``Z``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson
from fastapi import Response

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def dumps(content: Any) -> bytes:
    try:
        return orjson.dumps(content, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # An integer beyond 64 bits in a client's ``usage`` or ``error``: rare, still valid JSON.
        return json.dumps(content, default=_default, ensure_ascii=False).encode()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return orjson.loads(orjson.dumps(value, option=_OPTIONS))
    raise TypeError(f"cannot encode {type(value).__name__}")


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(dumps(content), status_code=status_code, media_type="application/json")
