"""Plain ASGI types, the two questions every raw ASGI layer in front of our apps asks of a scope, and
its one way to answer with an error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fnplane.shared import errors
from fnplane.shared.problems import problem_for, problem_headers, problem_messages

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a (lower-case) header, as sent."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def may_have_body(scope: Scope) -> bool:
    """False only when the request certainly has no body: `Content-Length: 0`, or a bodiless method
    without `Content-Length` or `Transfer-Encoding` (HTTP/2 bodies carry neither)."""
    length = header(scope, b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    if header(scope, b"transfer-encoding") is not None:
        return True
    return scope.get("method", "GET") not in _BODYLESS_METHODS


async def send_error(send: Send, error: errors.FnplaneError, instance: str) -> None:
    """Answer with the problem document of `error` (through the one table)."""
    status, document = problem_for(error, instance)
    for message in problem_messages(status, document, problem_headers(error)):
        await send(message)
