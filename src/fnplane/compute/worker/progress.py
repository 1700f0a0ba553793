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
from typing import Any

from fnplane.compute.worker.request_dirs import RequestDir

PROGRESS_FILE = "progress"
# a larger progress file is not read (its partialResponse goes into a status record)
MAX_PROGRESS_BYTES = 1024 * 1024


class ProgressWatch:
    def __init__(self, output: RequestDir) -> None:
        self._output = output
        self.mtime_ns = 0
        self.percent: int | None = None
        self.partial: Any = None
        # set by the poller when the file changed; cleared by the request that read the change
        self.changed = asyncio.Event()

    def poll(self) -> bool:
        """Whether the file changed since the last look (blocking: call it in a thread).

        Only a regular file counts: a symlink planted as `progress` is never followed."""
        mtime = self._output.output_mtime_ns(PROGRESS_FILE)
        if mtime is None or mtime == self.mtime_ns:
            return False
        fh = self._output.open_output(PROGRESS_FILE)
        if fh is None:
            return False
        try:
            with fh:
                doc = json.loads(fh.read(MAX_PROGRESS_BYTES))
        except (OSError, ValueError):
            return False  # half-written (or too big); the next look sees the whole file
        self.mtime_ns = mtime
        if isinstance(doc, dict):
            with contextlib.suppress(TypeError, ValueError):
                self.percent = int(doc.get("progress", 0))
            self.partial = doc.get("partialResponse")
        return True


def extra_files(output: RequestDir) -> list[str]:
    """The regular files besides `progress` the function left in its output dir: they go into the
    result zip (links, FIFOs and directories are left out)."""
    return output.output_files(skip=PROGRESS_FILE)


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
