"""A function that tries TCP connections and says which succeed (the container network test; standard
library only, so it runs in the test image's bare Python 3.11).

    python network_probe_function.py        (listens on $PORT, on $FUNCTION_HOST, default 127.0.0.1)

* `POST <any path>` with `{"targets": ["10.89.0.2:8000", ...], "timeout": 2}` (pexec sends its body
  there) answers 200 `{"results": {"10.89.0.2:8000": "connected" | "refused" | "timeout" | "<error>"}}`;
* `GET /v2/health/ready` answers 200.
"""

from __future__ import annotations

import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def attempt(target: str, timeout_s: float) -> str:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as error:
        return f"{type(error).__name__}: {error}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._send(200 if self.path == "/v2/health/ready" else 404, {})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        targets = [str(target) for target in body.get("targets", [])]
        timeout_s = float(body.get("timeout", 2))
        # at once: a dropped connection lasts the whole timeout
        with ThreadPoolExecutor(max_workers=max(len(targets), 1)) as pool:
            results = dict(zip(targets, pool.map(lambda t: attempt(t, timeout_s), targets), strict=True))
        self._send(200, {"results": results})

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the platform keeps the function's output


if __name__ == "__main__":
    address = (os.environ.get("FUNCTION_HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000")))
    print(f"network probe: listening on {address[0]}:{address[1]}", flush=True)
    ThreadingHTTPServer(address, Handler).serve_forever()
