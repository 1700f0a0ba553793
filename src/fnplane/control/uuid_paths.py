"""Upper-case ids in API paths: `UuidPathMiddleware` lower-cases every UUID-shaped path segment.

NVCF's controllers take ids as `java.util.UUID`, which parses any case, so
`GET /v2/nvcf/functions/{ID}/versions/{VID}` with upper-case hex works there. fnplane stores ids in the
canonical lower-case form and compares strings, so the path is normalized once, before routing.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

_UUID_SEGMENT = re.compile(
    r"(?<=/)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?=/|$)"
)


def lower_uuid_segments(path: str) -> str:
    return _UUID_SEGMENT.sub(lambda m: m.group(0).lower(), path)


class UuidPathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            normalized = lower_uuid_segments(path)
            if normalized != path:
                scope = dict(scope, path=normalized, raw_path=normalized.encode())
        await self.app(scope, receive, send)
