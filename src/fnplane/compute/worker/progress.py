"""The `progress` file a function writes into NVCF-LARGE-OUTPUT-DIR while it works on a pexec request:
`{"id": ..., "progress": <percent>, "partialResponse": {...}}` (reference/invocation.md 3.4).

One `ProgressPoller` per worker looks at the files of every running pexec request in one thread hop
per `interval_s` (was one hop per request per interval: 1,000 held requests cost the worker 10,000
hops a second) and sets the `changed` event of each watch whose file changed.
"""

from __future__ import annotations

import asyncio
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
        # set by the poller when the file changed; cleared by the request that read the change
        self.changed = asyncio.Event()

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


class ProgressPoller:
    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._watches: set[ProgressWatch] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="progress")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add(self, watch: ProgressWatch) -> None:
        self._watches.add(watch)

    def discard(self, watch: ProgressWatch) -> None:
        self._watches.discard(watch)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if not self._watches:
                continue
            changed = await asyncio.to_thread(_changed, list(self._watches))
            for watch in changed:
                watch.changed.set()


def _changed(watches: list[ProgressWatch]) -> list[ProgressWatch]:
    return [watch for watch in watches if watch.poll()]
