"""A function whose result is too large to answer inline (standard library only).

    containerArgs: "python3 examples/large_output.py"   (inferenceUrl /render; listens on $PORT, default 8000)

NVCF answers pexec inline only up to 5 MiB. A function with a larger result writes it as files into
the directory the request's `NVCF-LARGE-OUTPUT-DIR` header names, and answers a small JSON body; the
platform zips that body (as `<requestId>.response`) with the files, stores the zip and answers the
client **302** with its `Location`. The client downloads the zip with the same bearer (any pexec body
over 5 MiB takes the same path). Direct (Host-header) invocation streams bodies of any size inline
instead and leaves the output directory uncollected.

POST /render {"bytes": 6291456, "name": "result.bin"} writes `name` (default result.bin) of `bytes`
(default 6 MiB) deterministic bytes into the output directory and answers
{"file": name, "bytes": n, "sha256": "..."}. GET /v2/health/ready -> 200.
"""

from __future__ import annotations

import hashlib
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_BYTES = 6 * 1024 * 1024
_BLOCK = bytes(range(256)) * 256  # 64 KiB


def pattern(size: int) -> bytes:
    """`size` deterministic bytes (0, 1, ..., 255, 0, ...), so a client can check what it downloaded."""
    reps, rest = divmod(size, len(_BLOCK))
    return _BLOCK * reps + _BLOCK[:rest]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v2/health/ready":
            self._send(200, {"status": "ready"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            size = int(body.get("bytes", DEFAULT_BYTES))
            name = Path(str(body.get("name", "result.bin"))).name  # a plain file name, never a path
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            self._send(400, {"error": 'the body must be {"bytes": N, "name": "result.bin"}'})
            return
        output_dir = self.headers.get("NVCF-LARGE-OUTPUT-DIR")
        if not output_dir:
            self._send(400, {"error": "no NVCF-LARGE-OUTPUT-DIR: invoke this function through pexec"})
            return
        if size < 0 or not name:
            self._send(400, {"error": "bytes must be >= 0 and name a file name"})
            return
        data = pattern(size)
        (Path(output_dir) / name).write_bytes(data)
        self._send(200, {"file": name, "bytes": size, "sha256": hashlib.sha256(data).hexdigest()})

    def log_message(self, format: str, *args: object) -> None:
        print(f"large_output: {format % args}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("FUNCTION_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"large_output: listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
