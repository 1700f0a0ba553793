"""HEAD is answered as the GET it stands for, without the body, and ends a streamed GET at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from fnplane.control.head import HeadAsGetMiddleware


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/follow")
    async def follow() -> StreamingResponse:
        async def forever() -> AsyncIterator[bytes]:
            while True:
                yield b"a line\n"
                await asyncio.sleep(0.01)

        return StreamingResponse(forever(), media_type="text/plain")

    app.add_middleware(HeadAsGetMiddleware)
    return app


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_head_of_an_endless_stream_ends_after_the_head(spec_version: str) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "HEAD",
        "scheme": "http",
        "path": "/follow",
        "raw_path": b"/follow",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    client_gone = asyncio.Event()  # the client stays connected: only the app can end the answer
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await client_gone.wait()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(_app()(scope, receive, send), timeout=5)
    start, *bodies = sent
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert (b"content-type", b"text/plain; charset=utf-8") in start["headers"]
    assert bodies == [{"type": "http.response.body", "body": b"", "more_body": False}]
