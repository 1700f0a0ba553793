"""A test and benchmark function for the invocation plane (aiohttp; listens on $PORT / $INFERENCE_PORT).

    python examples/inv_function.py [port]

It listens on 127.0.0.1, or on $FUNCTION_HOST (its test image, tests/images/inv.Containerfile: 0.0.0.0).

Routes (any method unless noted):
    /echo                 the request body back, same Content-Type
    /inspect              JSON: method, path, query, headers, body length and sha256 as the function saw them
    /supreme              NVCF's load_tester_supreme POST /echo: {message, repeats, delay, size, stream};
                          SSE (one event per repeat) when stream is true and Accept is text/event-stream
    /sse?events=N&interval=S     N SSE events, S seconds apart
    /slow?seconds=S       answers after S seconds; marker=F: writes NVCF-REQID to F when it starts (and
                          F.cancelled when the call is aborted); log=F: appends NVCF-REQID to F (what it
                          served: one line per call)
    /large?bytes=N&delay=S  N deterministic bytes (pattern(N) below) after S s, in 64 KiB writes
    /status?code=N        that status with {"error": "..."}
    /progress?steps=N&interval=S  writes the NVCF progress file N times, then answers {"done": true}
    /files?name=F         writes F into NVCF-LARGE-OUTPUT-DIR (forces the 302 large-result path);
                          with &link=T, also plants F.link, a symlink to T (which the worker never follows)
    /assets               JSON {assetId: sha256} of the files in NVCF-ASSET-DIR
    /print?line=T         prints T on stdout and answers {"printed": T}: its only log line (it logs nothing
                          else, not even its requests)
    /v2/health/ready      200
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import string
import sys
import time
from pathlib import Path

from aiohttp import web


def pattern(size: int) -> bytes:
    """Deterministic bytes of any size, so tests can check large bodies exactly."""
    block = bytes(range(256)) * 256  # 64 KiB
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


async def params(request: web.Request) -> dict[str, str]:
    """Query parameters, overlaid by a JSON object body (pexec sends its body to the inference URL)."""
    out = dict(request.query)
    if request.content_type == "application/json" and request.can_read_body:
        try:
            doc = await request.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            out.update({k: str(v) for k, v in doc.items()})
    return out


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _append(path: Path, line: str) -> None:
    with path.open("a") as fh:
        fh.write(line + "\n")


def _asset_digests(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, content_type=request.content_type or "application/octet-stream")


async def inspect(request: web.Request) -> web.Response:
    body = await request.read()
    doc = {
        "method": request.method,
        "path": request.path,
        "rawPath": request.raw_path,
        "query": request.query_string,
        "headers": {k: v for k, v in request.headers.items()},
        "bodyLength": len(body),
        "bodySha256": hashlib.sha256(body).hexdigest(),
    }
    return web.json_response(doc)


async def supreme(request: web.Request) -> web.StreamResponse:
    try:
        doc = await request.json()
        message = str(doc["message"])
    except (ValueError, KeyError):
        return web.json_response({"error": "message is required"}, status=400)
    repeats = int(doc.get("repeats") or 0)
    delay = float(doc.get("delay") or 0)
    size = int(doc.get("size") or 0)
    if size > 0:
        message = "".join(random.choices(string.ascii_letters, k=size))
    if doc.get("stream") and request.headers.get("Accept") == "text/event-stream":
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for _ in range(repeats):
            await _pause(delay)
            await resp.write(f"data: {message}\n\n".encode())
        await resp.write_eof()
        return resp
    await _pause(delay)
    return web.Response(text=message * repeats, content_type="text/plain")


async def chat(request: web.Request) -> web.StreamResponse:
    """An OpenAI-style chat completion: its words as SSE chunks then `[DONE]` when asked to stream."""
    doc = await request.json()
    words = ["hello", "from", "fnplane"]
    if not (doc.get("stream") and request.headers.get("Accept") == "text/event-stream"):
        message = {"role": "assistant", "content": " ".join(words)}
        return web.json_response({"choices": [{"message": message}]})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for word in words:
        chunk = {"choices": [{"delta": {"content": word}}]}
        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def _pause(delay: float) -> None:
    if delay <= 0:
        return
    if delay <= 0.01:  # load_tester_supreme busy-waits short delays
        end = time.perf_counter() + delay
        while time.perf_counter() < end:
            pass
        return
    await asyncio.sleep(delay)


async def sse(request: web.Request) -> web.StreamResponse:
    q = await params(request)
    events = int(q.get("events", "5"))
    interval = float(q.get("interval", "0.1"))
    # `type`: another content type, as a function that mislabels its events would send
    content_type = q.get("type", "text/event-stream")
    resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for i in range(events):
        if i:
            await asyncio.sleep(interval)
        await resp.write(f"id: {i}\ndata: {json.dumps({'n': i, 't': time.time()})}\n\n".encode())
    await resp.write_eof()
    return resp


async def slow(request: web.Request) -> web.Response:
    q = await params(request)
    seconds = float(q.get("seconds", "1"))
    marker = q.get("marker")
    if q.get("log"):
        await asyncio.to_thread(_append, Path(q["log"]), request.headers.get("NVCF-REQID", ""))
    if marker:
        await asyncio.to_thread(_write, Path(marker), request.headers.get("NVCF-REQID", ""))
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if marker:
            await asyncio.to_thread(_write, Path(marker + ".cancelled"), "cancelled")
        raise
    return web.json_response({"slept": seconds, "pid": os.getpid()})


async def large(request: web.Request) -> web.StreamResponse:
    q = await params(request)
    size = int(q.get("bytes", str(6 * 1024 * 1024)))
    await asyncio.sleep(float(q.get("delay", "0")))
    data = pattern(size)
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if q.get("length", "1") == "1":
        resp.content_length = size
    await resp.prepare(request)
    for i in range(0, size, 65536):
        await resp.write(data[i : i + 65536])
    await resp.write_eof()
    return resp


async def status(request: web.Request) -> web.Response:
    code = int((await params(request)).get("code", "500"))
    return web.json_response({"error": f"function says {code}"}, status=code)


async def progress(request: web.Request) -> web.Response:
    q = await params(request)
    steps = int(q.get("steps", "3"))
    interval = float(q.get("interval", "0.5"))
    out = Path(request.headers["NVCF-LARGE-OUTPUT-DIR"])
    rid = request.headers.get("NVCF-REQID", "")
    for i in range(1, steps + 1):
        await asyncio.sleep(interval)
        doc = {"id": rid, "progress": int(100 * i / (steps + 1)), "partialResponse": {"step": i}}
        await asyncio.to_thread(_write, out / ".progress.tmp", json.dumps(doc))
        await asyncio.to_thread((out / ".progress.tmp").replace, out / "progress")
    await asyncio.sleep(interval)
    return web.json_response({"done": True, "steps": steps})


async def files(request: web.Request) -> web.Response:
    out = Path(request.headers["NVCF-LARGE-OUTPUT-DIR"])
    q = await params(request)
    name = q.get("name", "extra.bin")
    await asyncio.to_thread((out / name).write_bytes, pattern(1000))
    if "link" in q:
        await asyncio.to_thread((out / f"{name}.link").symlink_to, q["link"])
    return web.json_response({"wrote": name})


async def assets(request: web.Request) -> web.Response:
    folder = Path(request.headers.get("NVCF-ASSET-DIR", "/nonexistent"))
    found = await asyncio.to_thread(_asset_digests, folder)
    return web.json_response({"assets": found, "ids": request.headers.get("NVCF-FUNCTION-ASSET-IDS", "")})


async def say(request: web.Request) -> web.Response:
    line = (await params(request)).get("line", "")
    print(line, flush=True)
    return web.json_response({"printed": line})


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/supreme", supreme)
    app.router.add_route("*", "/sse", sse)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("*", "/large", large)
    app.router.add_route("*", "/status", status)
    app.router.add_route("*", "/progress", progress)
    app.router.add_route("*", "/files", files)
    app.router.add_route("*", "/assets", assets)
    app.router.add_route("*", "/print", say)
    app.router.add_route("POST", "/v1/chat/completions", chat)
    app.router.add_route("GET", "/v2/health/ready", ready)
    app.router.add_route("*", "/{tail:.*}", inspect)
    return app


if __name__ == "__main__":
    port = int(
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get("PORT") or os.environ.get("INFERENCE_PORT") or 8000
    )
    web.run_app(
        make_app(),
        host=os.environ.get("FUNCTION_HOST", "127.0.0.1"),
        port=port,
        print=None,
        access_log=None,
        handler_cancellation=True,
    )
