"""A long job that reports its progress the NVCF way (standard library only).

    containerArgs: "python3 examples/progress_job.py"   (inferenceUrl /job; listens on $PORT, default 8000)

While it works on a pexec request, a function may write a file named `progress` into the directory
the request's `NVCF-LARGE-OUTPUT-DIR` header names:

    {"id": "<NVCF-REQID>", "progress": <percent>, "partialResponse": {...}}

Each new version of the file answers the waiting client (or its next status poll) at once with **202**,
`NVCF-PERCENT-COMPLETE: <percent>` and the `partialResponse` as the body; the client keeps polling
`GET /v2/nvcf/pexec/status/{NVCF-REQID}` until the final answer, a 200 with the function's body. The
file is replaced whole (written aside, then renamed), so the platform never reads half of it.

POST /job {"steps": 5, "interval_s": 1.0} works `steps` steps of `interval_s` seconds each (defaults 5
and 1.0), writing the progress file after each, then answers {"done": true, "steps": n}.
GET /v2/health/ready -> 200.
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROGRESS_FILE = "progress"


def report(output_dir: Path, request_id: str, percent: int, partial: dict) -> None:
    """Replace the progress file whole: write a temporary file beside it, then rename it over."""
    doc = {"id": request_id, "progress": percent, "partialResponse": partial}
    temporary = output_dir / f".{PROGRESS_FILE}.tmp"
    temporary.write_text(json.dumps(doc))
    os.replace(temporary, output_dir / PROGRESS_FILE)


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
            steps = int(body.get("steps", 5))
            interval_s = float(body.get("interval_s", 1.0))
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            self._send(400, {"error": 'the body must be {"steps": 5, "interval_s": 1.0}'})
            return
        if steps < 1 or interval_s < 0:
            self._send(400, {"error": "steps must be >= 1 and interval_s >= 0"})
            return
        output_dir = self.headers.get("NVCF-LARGE-OUTPUT-DIR")
        request_id = self.headers.get("NVCF-REQID", "")
        for step in range(1, steps + 1):
            time.sleep(interval_s)  # the work of one step
            if output_dir:  # pexec gives one; a direct invocation has no progress reporting
                report(Path(output_dir), request_id, step * 100 // steps, {"step": step, "of": steps})
        self._send(200, {"done": True, "steps": steps})

    def log_message(self, format: str, *args: object) -> None:
        print(f"progress_job: {format % args}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("FUNCTION_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"progress_job: listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
