"""`HeadAsGetMiddleware`: every GET path of the control API also answers HEAD (RFC 9110 9.3.2).

FastAPI's routes take only the methods they are declared with (Starlette's own add HEAD to GET), so a
HEAD was 405. Here a HEAD is routed as the GET it stands for, authentication and errors included, and
answered with that GET's status and headers (its `Content-Length` too) without the body. Once the
head is out the app sees `http.disconnect`, so a streamed answer (instance logs with `follow`) stops
instead of running on for nobody.
"""

from __future__ import annotations

import asyncio

from fnplane.shared.asgi import ASGIApp, Message, Receive, Scope, Send, without_body


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        head_sent = asyncio.Event()
        request_read = False
        send_head_only = without_body(send)

        async def head_receive() -> Message:
            nonlocal request_read
            if not request_read:
                message = await receive()
                request_read = message["type"] != "http.request" or not message.get("more_body", False)
                return message
            await head_sent.wait()
            return {"type": "http.disconnect"}

        async def head_send(message: Message) -> None:
            await send_head_only(message)
            if message["type"] == "http.response.start":
                head_sent.set()

        # ASGI 2.3: the app listens for the disconnect above (told 2.4, Starlette waits instead for a
        # `send` that fails, which never happens to a body this layer drops)
        asgi = {**scope.get("asgi", {}), "spec_version": "2.3"}
        await self.app(dict(scope, method="GET", asgi=asgi), head_receive, head_send)
