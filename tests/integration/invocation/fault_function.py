"""A function for the long-running and failure tests (aiohttp): `python fault_function.py PORT`.

Routes:
    /pause?seconds=S&length=0|1&sse=0|1
                                  writes a first chunk, stays silent S seconds, writes the rest
                                  (Content-Length set unless length=0: then chunked; sse=1: two SSE
                                  events, text/event-stream)
    /crash?after=N                writes N bytes of a longer body, then the process exits at once
    /slow?seconds=S&marker=F      answers after S seconds; writes its pid to F when the request arrives
    /v2/health/ready              200
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from aiohttp import web

FIRST = b"first-chunk;"
REST = b"rest-of-the-body"


async def pause(request: web.Request) -> web.StreamResponse:
    seconds = float(request.query.get("seconds", "2"))
    sse = request.query.get("sse") == "1"
    first, rest = (b"data: 1\n\n", b"data: 2\n\n") if sse else (FIRST, REST)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream" if sse else "text/plain"})
    if request.query.get("length", "1") == "1" and not sse:
        resp.content_length = len(first) + len(rest)
    await resp.prepare(request)
    await resp.write(first)
    await asyncio.sleep(seconds)
    await resp.write(rest)
    await resp.write_eof()
    return resp


async def crash(request: web.Request) -> web.StreamResponse:
    after = int(request.query.get("after", "1000"))
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = after * 10
    await resp.prepare(request)
    await resp.write(b"x" * after)
    await asyncio.sleep(0.3)  # the first bytes reach the worker (and the client) first
    os._exit(3)


async def slow(request: web.Request) -> web.Response:
    seconds = float(request.query.get("seconds", "1"))
    marker = request.query.get("marker")
    if marker:
        await asyncio.to_thread(Path(marker).write_text, str(os.getpid()))
    await asyncio.sleep(seconds)
    return web.Response(
        text=json.dumps({"slept": seconds, "pid": os.getpid()}), content_type="application/json"
    )


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/pause", pause)
    app.router.add_route("*", "/crash", crash)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("GET", "/v2/health/ready", ready)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
