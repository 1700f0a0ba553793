"""JSON-only request bodies, as NVCF's API `consumes = application/json`.

A POST/PUT/PATCH that names another media type gets 415 problem+json. A body sent without any
Content-Type is read as JSON (clients that forget the header still work). Form-encoded endpoints
(the OAuth2 token endpoint) are exempt.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from fnplane.shared.problems import problem, problem_messages

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
FORM_PATHS = frozenset({"/token"})


def _is_json(media_type: str) -> bool:
    media_type = media_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


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
        elif not _is_json(content_type):
            detail = f"Content-Type '{content_type}' is not supported: send application/json"
            for message in problem_messages(415, problem(415, detail, scope["path"])):
                await send(message)
            return
        await self.app(scope, receive, send)
