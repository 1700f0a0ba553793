"""Request slots of one instance (`maxRequestConcurrency`) and the busy time the autoscaler reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fnplane.shared import metrics
from fnplane.shared.metrics import Distribution


class Slots:
    """A counting semaphore that also integrates busy slot-seconds.

    The request puller fetches a message only after `acquire()` returned, so a worker never holds
    more requests than it has slots.
    """

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("slot count must be at least 1")
        self.count = count
        self._semaphore = asyncio.Semaphore(count)
        self._busy = 0
        self._busy_since = time.monotonic()
        self._busy_slot_seconds = 0.0
        self._invocations = 0
        # per request: seconds in the work queue, and seconds from pick-up to the last answer byte
        self.queue_wait = Distribution(metrics.QUEUE_WAIT_BUCKETS_S)
        self.request_time = Distribution(metrics.WORKER_LATENCY_BUCKETS_S)

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def free(self) -> int:
        return self.count - self._busy

    def _accumulate(self) -> None:
        now = time.monotonic()
        self._busy_slot_seconds += self._busy * (now - self._busy_since)
        self._busy_since = now

    async def acquire(self) -> None:
        await self._semaphore.acquire()
        self._accumulate()
        self._busy += 1
        self._invocations += 1

    def release(self) -> None:
        self._accumulate()
        self._busy -= 1
        self._semaphore.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def take_sample(self) -> tuple[float, int]:
        """Busy slot-seconds and invocations since the previous sample (then reset)."""
        self._accumulate()
        sample = (self._busy_slot_seconds, self._invocations)
        self._busy_slot_seconds = 0.0
        self._invocations = 0
        return sample
