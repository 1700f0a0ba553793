"""`BodyAdmissionMiddleware`: the control API reads no request body it would refuse.

In front of every route, for a request that may carry a body:

1. `Content-Length` over `max_body_bytes` -> 413 at once, nothing read;
2. except on the anonymous form endpoint (`/token`, whose credential may be in the body), the bearer
   is authenticated first: none, malformed or not valid -> 401 (an unknown JWT client 404, as the
   routes answer), nothing read; the resolution is cached, so the route's own check costs nothing;
3. while the app reads, a running count: the first chunk past the limit (a chunked or HTTP/2 body
   without `Content-Length`, or one longer than it said) answers 413 and the app sees
   `http.disconnect`; the rest of the body is never read.

The routes keep their own scope checks; this only decides whether the body is worth reading.
"""

from __future__ import annotations

from fnplane.control.auth.authenticator import Authenticator
from fnplane.control.auth.dependencies import parse_bearer
from fnplane.control.content_type import FORM_PATHS
from fnplane.shared import errors, metrics
from fnplane.shared.asgi import (
    ASGIApp,
    BodyGuard,
    Receive,
    Scope,
    Send,
    body_too_large,
    header,
    may_have_body,
    send_error,
)


def _declared_length(scope: Scope) -> int | None:
    """Content-Length as sent; None when absent (a malformed one never gets here: the server 400s)."""
    raw = header(scope, b"content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


class BodyAdmissionMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator, max_body_bytes: int) -> None:
        self.app = app
        self._authenticator = authenticator
        self._limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not may_have_body(scope):
            await self.app(scope, receive, send)
            return
        length = _declared_length(scope)
        path: str = scope["path"]
        if length is not None and length > self._limit:
            await send_error(send, body_too_large(self._limit), path)
            return
        if path not in FORM_PATHS:
            try:
                raw = header(scope, b"authorization")
                bearer = parse_bearer(raw.decode("latin-1") if raw is not None else None)
                await self._authenticator.authenticate(bearer)
            except errors.FnplaneError as error:
                metrics.count_auth_failure("control", error)
                await send_error(send, error, path)
                return
        guard = BodyGuard(receive, send, path, max_bytes=self._limit)
        await self.app(scope, guard.receive, guard.send)
