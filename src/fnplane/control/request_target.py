"""`RequestTargetMiddleware`: a NUL character in a request's path or query is answered here, before
routing.

PostgreSQL's `text` cannot hold NUL, so an id such as `GET /v2/nvcf/registry-credentials/%00` reached
the database and failed there (500 "invalid byte sequence"); SQLite simply found nothing. Checked
once, for every route:

* a path with NUL (or a lone surrogate, which no server should decode a path into) names nothing:
  404, as every path id that is no resource's (docs/compatibility.md);
* a query parameter whose name or value holds one is bad input: 400 naming the parameter and the rule.

The query is read as Starlette reads it (`parse_qsl` of the latin-1 text, percent escapes as UTF-8),
so what is checked is what a route would get.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fnplane.control.json_values import printable, text_rule
from fnplane.shared.asgi import ASGIApp, Receive, Scope, Send, send_error
from fnplane.shared.errors import BadRequestError, NotFoundError


class RequestTargetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if text_rule(path) is not None:
            detail = f"no resource has the path {printable(path)} (a path must not contain NUL)"
            await send_error(send, NotFoundError(detail), path)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True):
            rule = text_rule(name) or text_rule(value)
            if rule is not None:
                field = printable(name)
                detail = f"Validation failed: field '{field}': {rule}"
                await send_error(send, BadRequestError(detail, field=field, rule=rule), path)
                return
        await self.app(scope, receive, send)
