"""Upper-case ids in API paths: `UuidPathMiddleware` lower-cases every UUID-shaped path segment.

NVCF's controllers take ids as `java.util.UUID`, which parses any case, so
`GET /v2/nvcf/functions/{ID}/versions/{VID}` with upper-case hex works there. fnplane stores ids in the
canonical lower-case form and compares strings, so the path is normalized once, before routing.

A trailing slash is dropped there too: the gateway's paths take one (`/v2/nvcf/pexec/functions/{id}/`),
and the router would otherwise answer the API's with a 307 to a Location built from the Host header
(an `http://` URL behind a TLS proxy) and no body.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

_UUID_SEGMENT = re.compile(
    r"(?<=/)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?=/|$)"
)


def lower_uuid_segments(path: str) -> str:
    return _UUID_SEGMENT.sub(lambda m: m.group(0).lower(), path)


def normalize_path(path: str) -> str:
    """Ids in lower case, no trailing slash (but for the root)."""
    path = lower_uuid_segments(path)
    return path.rstrip("/") or "/"


class UuidPathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            normalized = normalize_path(path)
            if normalized != path:
                scope = dict(scope, path=normalized, raw_path=normalized.encode())
        await self.app(scope, receive, send)
