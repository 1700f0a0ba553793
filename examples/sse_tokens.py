"""Server-sent events: a function that streams its answer one token at a time (standard library only).

    containerArgs: "python3 examples/sse_tokens.py"   (inferenceUrl /generate; listens on $PORT, default 8000)

POST /generate {"prompt": "a b c", "interval_s": 0.05} answers `text/event-stream`: one event per
whitespace-separated word of the prompt, `interval_s` apart (default 0.05 s), each

    id: <n>
    data: {"index": <n>, "token": "<word>"}

and a last `data: [DONE]`, as LLM servers end their streams. Through pexec (or a Host-header
invocation) the events reach the client as the function writes them; send `Accept: text/event-stream`,
as NVCF asks, so that pexec waits up to 20 minutes (not 60 s) for the stream to begin.
GET /v2/health/ready -> 200.
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_INTERVAL_S = 0.05
DEFAULT_PROMPT = "fnplane streams every token as the function writes it"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v2/health/ready":
            self._send_json(200, {"status": "ready"})
        else:
            self._send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            tokens = str(body.get("prompt") or DEFAULT_PROMPT).split()
            interval_s = float(body.get("interval_s", DEFAULT_INTERVAL_S))
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            self._send_json(400, {"error": 'the body must be {"prompt": "...", "interval_s": 0.05}'})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # no Content-Length: the length is unknown until the last token, so the body is chunked
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for index, token in enumerate(tokens):
                if index:
                    time.sleep(interval_s)
                event = json.dumps({"index": index, "token": token})
                self._chunk(f"id: {index}\ndata: {event}\n\n".encode())
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            # the client went away (the platform cancels the call): stop generating
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        # one HTTP chunk per event, written at once (wfile is unbuffered)
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def log_message(self, format: str, *args: object) -> None:
        print(f"sse_tokens: {format % args}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("FUNCTION_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"sse_tokens: listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
