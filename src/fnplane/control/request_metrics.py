"""Counts and timings of control API requests by route template (`/v2/nvcf/functions/{functionId}`),
never by concrete path: ids in paths would make every function its own series."""

from __future__ import annotations

import re
import time

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fnplane.shared import metrics

UNMATCHED = "UNKNOWN"


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            method = scope["method"]
            route = route_template(scope)
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_REQUEST_DURATION.labels(method, route).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The path template of the route that serves this request (UNKNOWN when none does), matched
    against the app's OpenAPI paths: FastAPI's own route objects are internal, its document is not."""
    app = scope.get("app")
    if app is None:
        return UNMATCHED
    templates = _TEMPLATES.get(id(app))
    if templates is None:
        paths = app.openapi().get("paths", {})
        templates = _TEMPLATES[id(app)] = [(compile_path(path)[0], path) for path in paths]
    path = scope["path"]
    return next((template for regex, template in templates if regex.match(path)), UNMATCHED)


# compiled once per app (one or two per process)
_TEMPLATES: dict[int, list[tuple[re.Pattern[str], str]]] = {}
