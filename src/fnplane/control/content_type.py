"""JSON-only request bodies, as NVCF's API `consumes = application/json`.

A POST/PUT/PATCH that names another media type gets 415 problem+json. A body sent without any
Content-Type is read as JSON (clients that forget the header still work). Form-encoded endpoints
(the OAuth2 token endpoint) are exempt.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from fnplane.shared.asgi import is_json_media_type, unsupported_media_type_detail
from fnplane.shared.problems import problem, problem_messages

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
FORM_PATHS = frozenset({"/token"})


class JsonBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or scope["path"] in FORM_PATHS:
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        content_type = next((v.decode("latin-1") for k, v in headers if k == b"content-type"), None)
        if content_type is None:
            scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        elif not is_json_media_type(content_type):
            detail = unsupported_media_type_detail(content_type)
            for message in problem_messages(415, problem(415, detail, scope["path"])):
                await send(message)
            return
        await self.app(scope, receive, send)
