"""`JsonValuesMiddleware`: a request body's numbers are JSON numbers (RFC 8259 section 6) and its
strings are text the database can hold.

Python's `json.loads`, which FastAPI parses bodies with, also takes `NaN`, `Infinity` and `-Infinity`,
and turns a number past a double's range (`1e400`) into infinity. None of them is JSON; stored, they
reach a database that refuses them (PostgreSQL) or clients that cannot read them.

It also takes a string escape of a lone UTF-16 surrogate (`"\\ud800"`, RFC 8259 section 8.2 allows
the escape but it names no character): the string cannot be encoded as UTF-8, so the database write
failed (500). And a NUL character (`"\\u0000"`) is JSON, but PostgreSQL's `text` and `jsonb` cannot
hold it (500 there; SQLite stored it). Both are refused wherever they are, in an object's key too.

So every JSON body of the control API is parsed here, once, before any route sees it: the first such
value (in document order) is a 400 problem+json naming the field that holds it
(`deploymentSpecifications.0.minInstances`, `secrets.0.value`; `body` for the whole body) and the
rule. A key that holds a bad character is named with the character escaped (`secrets.0.value.\\ud800`).

A body that is not JSON at all goes on unchanged: the route's own parsing answers it (400). The body
is read whole first; `BodyAdmissionMiddleware`, outside this one, has bounded its size.
"""

from __future__ import annotations

import re
from typing import Any

from fnplane.control.content_type import FORM_PATHS
from fnplane.shared.asgi import ASGIApp, Message, Receive, Scope, Send, may_have_body, send_error
from fnplane.shared.errors import BadRequestError
from fnplane.shared.json_numbers import FINITE_RULE, NOT_FINITE, loads_marked

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
SURROGATE_RULE = (
    "must be valid Unicode text (a lone surrogate escape such as \\ud800, without its pair, is no character)"
)
NUL_RULE = "must not contain a NUL character (\\u0000): the database cannot store it"

# what a string of the body must not hold: NUL, or a UTF-16 surrogate left alone (json.loads joins a
# valid pair into one character, so any surrogate in the parsed string is a lone one)
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def text_rule(text: str) -> str | None:
    """The rule `text` breaks (NUL_RULE, SURROGATE_RULE), None when it is text the database holds."""
    found = _BAD_TEXT.search(text)
    if found is None:
        return None
    return NUL_RULE if found.group() == "\x00" else SURROGATE_RULE


def printable(text: str) -> str:
    """`text` with its NULs and lone surrogates written as escapes: safe to name in an answer."""
    return _BAD_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def invalid_value(body: bytes) -> tuple[str, str] | None:
    """(dotted path, rule) of the first value of the JSON `body` that breaks a rule of the module
    docstring: a number that is not finite, a string (or key) with NUL or a lone surrogate. The path
    is `a.0.b`, `body` for the root; None when every value is fine or `body` is not JSON."""
    try:
        document = loads_marked(body)
    except (ValueError, RecursionError):  # not JSON (or not UTF-8): the route answers that
        return None
    # iterative: the document may be nested as deep as the parser allowed
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if value is NOT_FINITE:
            return ".".join(path) or "body", FINITE_RULE
        if isinstance(value, str):
            rule = text_rule(value)
            if rule is not None:
                return ".".join(path) or "body", rule
        elif isinstance(value, dict):
            for key in value:
                rule = text_rule(key)
                if rule is not None:
                    # a bad key is named before whatever the values of the object hold
                    return ".".join((*path, printable(key))), rule
            stack.extend((item, (*path, key)) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((item, (*path, str(index))) for index, item in reversed(list(enumerate(value))))
    return None


class JsonValuesMiddleware:
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
            found = invalid_value(b"".join(m.get("body", b"") for m in messages))
            if found is not None:
                field, rule = found
                detail = f"Validation failed: field '{field}': {rule}"
                await send_error(send, BadRequestError(detail, field=field, rule=rule), scope["path"])
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
