"""An HTTP function that takes a while to be ready: it answers 404 on its health URL until then.

    containerArgs: "python examples/slow_start_server.py --ready-after 3"

404 from the health URL means "up, not ready yet" (reference/compute.md 1.5), so the worker keeps polling.
"""

from __future__ import annotations

import argparse
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.monotonic()
READY_AFTER_S = 3.0


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ready = time.monotonic() - STARTED >= READY_AFTER_S
        status = 200 if ready or self.path != "/v2/health/ready" else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    global READY_AFTER_S
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready-after", type=float, default=3.0)
    READY_AFTER_S = parser.parse_args().ready_after
    port = int(os.environ.get("PORT", "8000"))
    print(f"slow: listening on {port}, ready after {READY_AFTER_S}s", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
