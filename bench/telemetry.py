"""CPU per request of the gateway's telemetry alone, in this process: a direct invocation's
RequestTelemetry (log context, the watch of `send`, its metrics), two sends and the access line into
the BatchedStreamHandler that `fnplane up` sets up (its stderr to /dev/null).

    PYTHONPATH=<tree>/src python -m bench.telemetry [text|json|off] [--requests N]

Prints the best of 5 runs of N requests (process CPU time). It runs on trees from before the merge of
`observe.Observation` into RequestTelemetry too, so two trees can be compared (docs/benchmarks.md,
"Telemetry CPU: same-run A/B").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from fnplane.invocation import observe
from fnplane.invocation.http import Message, Request
from fnplane.invocation.request_telemetry import RequestTelemetry
from fnplane.telemetry import logs

FID = "6f2c0a4e-3b1d-4a59-9b7e-2d0c8c1f0a11"
VID = "0b3e3d0e-5c57-4d6c-8d8e-5a0f2f9b1c22"
SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/supreme",
    "headers": [(b"host", b"f.invocation.example"), (b"content-type", b"application/json")],
    "query_string": b"",
}
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/json"),
        (b"nvcf-reqid", b"5d7b9d2e-8f3c-4a5e-9a77-1f2e3d4c5b6a"),
    ],
}
BODY = {"type": "http.response.body", "body": b'{"hello": "world"}'}


async def _receive() -> Message:
    return {"type": "http.disconnect"}


async def _send(message: Message) -> None:
    pass


async def _answer(request: Request) -> None:
    observe.chosen(VID, "nca")  # what admission tells the request's telemetry
    logs.annotate(request_id="5d7b9d2e-8f3c-4a5e-9a77-1f2e3d4c5b6a", function_version_id=VID, account="nca")
    await request.send(START)
    await request.send(BODY)


async def one() -> None:
    request = Request(SCOPE, _receive, _send)
    if hasattr(observe, "Observation"):  # a tree from before the merge: two objects, two wrappers
        seen = RequestTelemetry(request, direct=(FID, None))
        try:
            with observe.Observation("direct", FID) as observation:
                request.send = observation.wrap(request.send)
                await _answer(request)
        finally:
            seen.close()
        return
    seen = RequestTelemetry(request, direct=(FID, None), counted=("direct", FID))
    try:
        await _answer(request)
    finally:
        seen.close()


async def measure(requests: int) -> float:
    for _ in range(2_000):  # the label children, the caches
        await one()
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(requests):
            await one()
        best = min(best, (time.process_time() - started) / requests * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("lines", nargs="?", choices=("text", "json", "off"), default="text")
    ap.add_argument("--requests", type=int, default=10_000)
    args = ap.parse_args()
    sys.stderr = open(os.devnull, "w")  # where the handler writes its batches
    fmt = logs.LogFormat.JSON if args.lines == "json" else logs.LogFormat.TEXT
    logs.configure_logging("info", fmt, access=args.lines != "off")
    us = asyncio.run(measure(args.requests))
    print(f"access lines {args.lines}: {us:.1f} µs of CPU per request (best of 5 x {args.requests:,})")


if __name__ == "__main__":
    main()
