"""A minimal HTTP function using only the standard library.

    containerArgs: "python examples/echo_server.py"   (listens on $PORT, default 8000)

It listens on 127.0.0.1, or on $FUNCTION_HOST: the test image (tests/images/echo.Containerfile) sets
0.0.0.0, since a published container port arrives on the container's own interface, not its loopback.

GET /v2/health/ready -> 200; any POST echoes its JSON body back; GET /pid tells the process id.
ECHO_STARTUP_DELAY_S delays listening (a slow-starting server).
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
        elif self.path == "/pid":
            self._send(200, {"pid": os.getpid(), "port": self.server.server_address[1]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": "body is not JSON"})
            return
        self._send(200, {"echo": body, "path": self.path})

    def log_message(self, format: str, *args: object) -> None:
        print(f"echo: {format % args}", flush=True)


def main() -> None:
    delay_s = float(os.environ.get("ECHO_STARTUP_DELAY_S", "0"))
    if delay_s:
        print(f"echo: warming up for {delay_s}s", flush=True)
        time.sleep(delay_s)
    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("FUNCTION_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"echo: listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
