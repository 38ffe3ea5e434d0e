"""chatkeep: a self-hosted chat service for language models whose history is always right.

The SDK (SPEC 6.1)::

    from chatkeep import Client
    with Client(base_url="http://127.0.0.1:8321", api_key="ck_...") as ck:
        print(ck.turns.send(ck.sessions.create(title="Trip").id, "Hello").text)
"""

__version__ = "0.1.0"

from chatkeep.client._async_client import AsyncClient  # noqa: E402
from chatkeep.client._client import Client  # noqa: E402
from chatkeep.client._errors import (  # noqa: E402
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequest,
    ChatkeepError,
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    TurnError,
    UnprocessableEntity,
    UnsupportedMediaType,
)
from chatkeep.client._models import (  # noqa: E402
    BatchItemResult,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    Message,
    MessageEvent,
    Model,
    OutboxEntry,
    SearchHit,
    Session,
    StartEvent,
    TurnEvent,
)
from chatkeep.client._stream import AsyncTurnStream, TurnStream  # noqa: E402

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncTurnStream",
    "AuthenticationError",
    "BadRequest",
    "BatchItemResult",
    "ChatkeepError",
    "Client",
    "Conflict",
    "DeltaEvent",
    "DoneEvent",
    "ErrorEvent",
    "Gone",
    "Message",
    "MessageEvent",
    "Model",
    "NotFound",
    "OutboxEntry",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "SearchHit",
    "ServerError",
    "Session",
    "StartEvent",
    "TurnError",
    "TurnEvent",
    "TurnStream",
    "UnprocessableEntity",
    "UnsupportedMediaType",
    "__version__",
]
