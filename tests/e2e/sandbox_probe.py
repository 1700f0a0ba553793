"""A hostile function for the sandbox tests: it tries to reach the platform and reports what it got.

POST /probe with a JSON body {"files": [...], "pids": [...], "dirs": [...]} answers
    {"files": {path: outcome}, "environs": {pid: outcome}, "dirs": {path: outcome},
     "env": {its environment}, "home": ..., "tmp": ..., "workdir": ..., "outputDir": ...}
where an outcome is "read" (it got the bytes) or the name of the error (PermissionError, ...).
GET /v2/health/ready -> 200. Standard library only: it runs under any interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.read(4096)
        return "read"
    except OSError as error:
        return type(error).__name__


def _list(path: str) -> str:
    try:
        os.listdir(path)
        return "listed"
    except OSError as error:
        return type(error).__name__


def _writable(directory: str) -> dict[str, Any]:
    """Whether a new file can be written in `directory`, and what the directory held before."""
    try:
        before = sorted(os.listdir(directory))
    except OSError as error:
        return {"error": type(error).__name__}
    probe = Path(directory) / "sandbox-probe-write"
    try:
        probe.write_text("x")
        probe.unlink()
        written = "written"
    except OSError as error:
        written = type(error).__name__
    return {"path": directory, "before": before, "write": written}


def probe(request: dict[str, Any], output_dir: str) -> dict[str, Any]:
    workdir = os.getcwd()
    try:
        umounted = subprocess.run(["umount", "/proc"], capture_output=True, check=False).returncode
    except OSError:
        umounted = -1
    return {
        "files": {path: _read(path) for path in request.get("files", [])},
        "environs": {str(pid): _read(f"/proc/{pid}/environ") for pid in request.get("pids", [])},
        "mems": {str(pid): _read(f"/proc/{pid}/mem") for pid in request.get("pids", [])},
        "dirs": {path: _list(path) for path in request.get("dirs", [])},
        "env": dict(os.environ),
        "home": _writable(os.environ.get("HOME", "/nonexistent")),
        "tmp": _writable(os.environ.get("TMPDIR", "/tmp")),
        "workdir": {"read": _read(__file__), **_writable(workdir)},
        "outputDir": {"path": output_dir, "writable": os.access(output_dir, os.W_OK)},
        "umount": umounted,
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer(200, {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        self._answer(200, probe(request, self.headers.get("NVCF-LARGE-OUTPUT-DIR", "")))

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
