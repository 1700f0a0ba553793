"""The `progress` file a function writes into NVCF-LARGE-OUTPUT-DIR while it works on a pexec request:
`{"id": ..., "progress": <percent>, "partialResponse": {...}}` (reference/invocation.md 3.4)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress"


class ProgressWatch:
    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / PROGRESS_FILE
        self.mtime_ns = 0
        self.percent: int | None = None
        self.partial: Any = None

    def poll(self) -> bool:
        """Whether the file changed since the last look (blocking: call it in a thread)."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return False
        if mtime == self.mtime_ns:
            return False
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return False  # half-written; the next look sees the whole file
        self.mtime_ns = mtime
        if isinstance(doc, dict):
            with contextlib.suppress(TypeError, ValueError):
                self.percent = int(doc.get("progress", 0))
            self.partial = doc.get("partialResponse")
        return True


def extra_files(output_dir: Path) -> list[Path]:
    """The files besides `progress` the function left in its output dir: they go into the result zip."""
    try:
        return sorted(p for p in output_dir.iterdir() if p.name != PROGRESS_FILE and p.is_file())
    except OSError:
        return []
