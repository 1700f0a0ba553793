"""`FiniteJsonMiddleware`: a request body's numbers are JSON numbers (RFC 8259 section 6).

Python's `json.loads`, which FastAPI parses bodies with, also takes `NaN`, `Infinity` and `-Infinity`,
and turns a number past a double's range (`1e400`) into infinity. None of them is JSON; stored, they
reach a database that refuses them (PostgreSQL) or clients that cannot read them. So every JSON body
of the control API is checked here, once, before any route sees it: such a number is a 400
problem+json naming the field that holds it (`deploymentSpecifications.0.minInstances`; `body` for
the whole body) and the rule.

A body that is not JSON at all goes on unchanged: the route's own parsing answers it (400). The body
is read whole first; `BodyAdmissionMiddleware`, outside this one, has bounded its size.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fnplane.control.content_type import FORM_PATHS
from fnplane.shared.asgi import ASGIApp, Message, Receive, Scope, Send, may_have_body, send_error
from fnplane.shared.errors import BadRequestError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
FINITE_RULE = "must be a finite JSON number (NaN, Infinity and numbers beyond a double's range are not JSON)"


class _NotFinite:
    """Where the parse met a number that is not JSON (a marker in the parsed document)."""


_NOT_FINITE = _NotFinite()


def _parse_float(text: str) -> float | _NotFinite:
    value = float(text)
    return value if math.isfinite(value) else _NOT_FINITE


def _parse_constant(_: str) -> _NotFinite:
    return _NOT_FINITE


def non_finite_field(body: bytes) -> str | None:
    """The dotted path (`a.0.b`, `body` for the root) of the first number of the JSON `body` that is
    not finite; None when there is none or `body` is not JSON."""
    try:
        document = json.loads(body, parse_float=_parse_float, parse_constant=_parse_constant)
    except (ValueError, RecursionError):  # not JSON (or not UTF-8): the route answers that
        return None
    # iterative: the document may be nested as deep as the parser allowed
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if value is _NOT_FINITE:
            return ".".join(path) or "body"
        if isinstance(value, dict):
            stack.extend((item, (*path, str(key))) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((item, (*path, str(index))) for index, item in reversed(list(enumerate(value))))
    return None


class FiniteJsonMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or scope["path"] in FORM_PATHS
            or not may_have_body(scope)
        ):
            await self.app(scope, receive, send)
            return
        messages = await _read_body(receive)
        last = messages[-1]
        if last["type"] == "http.request" and not last.get("more_body", False):
            field = non_finite_field(b"".join(m.get("body", b"") for m in messages))
            if field is not None:
                detail = f"Validation failed: field '{field}': {FINITE_RULE}"
                await send_error(send, BadRequestError(detail, field=field, rule=FINITE_RULE), scope["path"])
                return
        await self.app(scope, _replay(messages, receive), send)


async def _read_body(receive: Receive) -> list[Message]:
    """Every message up to the body's end (or whatever ended it: a disconnect, the admission's 413)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that hands the app the messages already read, then the server's own."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
