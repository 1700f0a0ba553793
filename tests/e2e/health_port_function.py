"""A function whose health check is on a port of its own, as NVCF's Triton containers have it (standard
library only, so it also runs in the test image's bare Python 3.11).

    python health_port_function.py [--port P] [--health-port H]    (defaults: $PORT, $HEALTH_PORT)

* on P, inference: `POST <any path>` answers 200 `{"echo": <the JSON body>, "environ": {...}}`, the
  environ holding the port variables the platform gave it; everything else is 404, the health path too;
* on H, only `GET /health-only`, 200 `{"ready": true}`; everything else is 404.

So a platform that health-checks the inference port sees a 404 ("up, not ready yet") forever. It binds
$FUNCTION_HOST (default 127.0.0.1; a container's published ports need 0.0.0.0).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEALTH_PATH = "/health-only"
PORT_VARIABLES = (
    "PORT",
    "HEALTH_PORT",
    "INFERENCE_PORT",
    "INFERENCE_HEALTH_PORT",
    "INFERENCE_HEALTH_ENDPOINT",
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _drain(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the platform keeps the function's output


class InferenceHandler(_Handler):
    def do_GET(self) -> None:
        self._send(404, {"error": f"no {self.path} on the inference port"})

    def do_POST(self) -> None:
        body = self._drain()
        environ = {name: os.environ.get(name) for name in PORT_VARIABLES}
        self._send(200, {"echo": json.loads(body or b"null"), "environ": environ})


class HealthHandler(_Handler):
    def do_GET(self) -> None:
        if self.path == HEALTH_PATH:
            self._send(200, {"ready": True})
        else:
            self._send(404, {"error": f"no {self.path} on the health port"})

    def do_POST(self) -> None:
        self._drain()
        self._send(404, {"error": "no inference on the health port"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--health-port", type=int, default=int(os.environ.get("HEALTH_PORT", "8001")))
    args = parser.parse_args()
    if args.port == args.health_port:
        parser.error(f"the inference and health ports are both {args.port}")
    host = os.environ.get("FUNCTION_HOST", "127.0.0.1")
    inference = ThreadingHTTPServer((host, args.port), InferenceHandler)
    health = ThreadingHTTPServer((host, args.health_port), HealthHandler)
    print(f"inference on {host}:{args.port}, health on {host}:{args.health_port}{HEALTH_PATH}", flush=True)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    inference.serve_forever()


if __name__ == "__main__":
    main()
