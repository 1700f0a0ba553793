"""The fnplane SDK: `AsyncClient` and its blocking twin `Client` (docs/sdk.md).

    from fnplane.sdk import Client
    with Client() as client:                     # $FNPLANE_URL and $FNPLANE_API_KEY
        print(client.invoke(function_id, {"hello": "world"}))

Errors are the classes of the shared error tree (`fnplane.sdk.errors`), each with `status`, `title`,
`detail`, `problem`, `request_id` and `retry_after`. `keepalive_http_client()` is an HTTP/2
`httpx.Client` that sends PINGs on idle connections (also for `openai.OpenAI(http_client=...)`).
"""

from __future__ import annotations

from fnplane.sdk.client import AsyncClient
from fnplane.sdk.errors import (
    ApiError,
    BadRequestError,
    ConflictError,
    DeploymentFailedError,
    FailedPreconditionError,
    FnplaneError,
    ForbiddenError,
    GatewayTimeoutError,
    GoneError,
    NotAnEventStreamError,
    NotFoundError,
    PayloadTooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
    UnavailableError,
    UnprocessableError,
    error_for,
)
from fnplane.sdk.keepalive import (
    AsyncKeepaliveTransport,
    Keepalive,
    KeepaliveTransport,
    keepalive_async_http_client,
    keepalive_http_client,
)
from fnplane.sdk.results import InvocationResult, InvocationStatus
from fnplane.sdk.sse import ServerSentEvent
from fnplane.sdk.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncKeepaliveTransport",
    "BadRequestError",
    "Client",
    "ConflictError",
    "DeploymentFailedError",
    "FailedPreconditionError",
    "FnplaneError",
    "ForbiddenError",
    "GatewayTimeoutError",
    "GoneError",
    "InvocationResult",
    "InvocationStatus",
    "Keepalive",
    "KeepaliveTransport",
    "NotAnEventStreamError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServerSentEvent",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnavailableError",
    "UnprocessableError",
    "error_for",
    "keepalive_async_http_client",
    "keepalive_http_client",
]
