"""The function the CLI's end-to-end tests deploy (aiohttp; listens on 127.0.0.1:$PORT, default 8000).

    POST /run  {"mode": ...}     the inference URL; the body chooses what happens:
        "echo" (default)         {"echo": <body>}
        "sse"                    server-sent events `first`, then, once the file <dir>/release-sse
                                 exists, `second`: a gap the test controls, so it can see that the CLI
                                 printed the first event while the stream was still open
        "wait"                   writes <dir>/started, answers {"done": true} once <dir>/release exists
        "assets"                 {"assets": {name: size}} of the input assets it was given
    GET /v2/health/ready         200
    anything else                {"method", "path", "query", "body", "contentType", "header"}: what the
                                 function saw (`header`: the X-Cli-Test header)

It prints `cli-function: listening` at start (the logs test looks for it).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

RELEASE_WAIT_S = 60.0


async def released(path: Path) -> None:
    """Return once `path` exists (the test creates it), at most RELEASE_WAIT_S later."""
    for _ in range(int(RELEASE_WAIT_S / 0.05)):
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.05)


async def run(request: web.Request) -> web.StreamResponse:
    body = await request.json() if request.can_read_body else {}
    mode = body.get("mode", "echo")
    folder = Path(body.get("dir", "."))
    if mode == "sse":
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await released(folder / "release-sse")
        await response.write(b"data: second\n\n")
        await response.write_eof()
        return response
    if mode == "wait":
        await asyncio.to_thread((folder / "started").write_text, request.headers.get("NVCF-REQID", ""))
        await released(folder / "release")
        return web.json_response({"done": True})
    if mode == "assets":
        folder = Path(request.headers.get("NVCF-ASSET-DIR", "/nonexistent"))
        files = await asyncio.to_thread(lambda: sorted(folder.iterdir()) if folder.is_dir() else [])
        return web.json_response({"assets": {f.name: f.stat().st_size for f in files}})
    return web.json_response({"echo": body})


async def ready(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


async def anything(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "body": body.decode(errors="replace"),
            "contentType": request.headers.get("Content-Type"),
            "header": request.headers.get("X-Cli-Test"),
        }
    )


def main() -> None:
    app = web.Application()
    app.router.add_post("/run", run)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_route("*", "/{tail:.*}", anything)
    port = int(os.environ.get("PORT", "8000"))
    print(f"cli-function: listening on {port}", flush=True)
    # SIGTERM: a request the test left waiting for its release file must not hold the stop (aiohttp: 60 s)
    web.run_app(app, host="127.0.0.1", port=port, print=None, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
