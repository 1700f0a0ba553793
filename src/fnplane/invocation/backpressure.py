"""Back-pressure a client can act on: when to retry a full queue, and the gateway's own limit.

* A full version queue answers 429 with `Retry-After`: the seconds the queue takes to drain one
  request at its measured rate (`retry_after_s`), at least 1, at most a setting. The rate is measured
  from the queue consumer's ack floor (requests finished): over the samples taken at recent full-queue
  answers when they span long enough, else over the consumer's lifetime (`DrainMeter`). Nothing
  measured drains (no worker finished anything) -> the maximum.
* A gateway at its global concurrency limit (invocations in flight on this process) answers 503 with
  `Retry-After` from a setting (`ConcurrencyLimit`); the connection is answered, never dropped.

The per-credential limits are another part's (rate_limit.py); these two protect a queue and a process.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fnplane.shared import errors

# samples older than this no longer describe the queue's pace
SAMPLE_WINDOW_S = 60.0
# two samples closer than this say too little about a rate (the lifetime figure is used instead)
MIN_SPAN_S = 1.0
# at most one probe of a version's consumer per this interval; later 429s reuse it
PROBE_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class QueueProgress:
    """One look at a version's queue consumer."""

    # requests waiting for a worker
    pending: int
    # requests finished (acked) since the consumer was created
    finished: int
    # seconds since the consumer was created
    age_s: float


def drain_rate(samples: list[tuple[float, int]], latest: QueueProgress) -> float:
    """Requests per second leaving the queue: over the recent samples `(monotonic time, finished)`
    when they span at least MIN_SPAN_S and saw progress, else over the consumer's lifetime."""
    if len(samples) >= 2:
        (t0, f0), (t1, f1) = samples[0], samples[-1]
        if t1 - t0 >= MIN_SPAN_S and f1 > f0:
            return (f1 - f0) / (t1 - t0)
    if latest.age_s > 0 and latest.finished > 0:
        return latest.finished / latest.age_s
    return 0.0


def retry_after_s(rate_per_s: float, max_s: int) -> int:
    """Seconds until the queue, draining at `rate_per_s`, has room for one more request: 1..max_s."""
    if rate_per_s <= 0:
        return max_s
    return max(1, min(max_s, math.ceil(1.0 / rate_per_s)))


Probe = Callable[[str], Awaitable[QueueProgress | None]]


class DrainMeter:
    """Measures each version's drain rate when its queue is full (nothing on the normal path)."""

    def __init__(
        self, probe: Probe, max_retry_after_s: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._probe = probe
        self._clock = clock
        self._max_s = max_retry_after_s
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._latest: dict[str, tuple[float, QueueProgress]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def retry_after(self, version_id: str) -> int:
        """The Retry-After of a full-queue answer for this version, from a fresh enough probe."""
        lock = self._locks.setdefault(version_id, asyncio.Lock())
        async with lock:
            now = self._clock()
            samples = self._samples.setdefault(version_id, deque())
            latest = self._latest.get(version_id)
            if latest is None or now - latest[0] >= PROBE_INTERVAL_S:
                progress = await self._probe(version_id)
                if progress is None:
                    return self._max_s
                latest = (now, progress)
                self._latest[version_id] = latest
                samples.append((now, progress.finished))
            while samples and now - samples[0][0] > SAMPLE_WINDOW_S:
                samples.popleft()
            return retry_after_s(drain_rate(list(samples), latest[1]), self._max_s)


class ConcurrencyLimit:
    """At most `limit` invocations in flight on this gateway (0: no limit); beyond it 503.

    `with limit.hold():` around an invocation; a plain class rather than a generator-based context
    manager: it is entered on every invocation."""

    __slots__ = ("_hold", "_limit", "_retry_after_s", "in_flight")

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self._limit = limit
        self._retry_after_s = retry_after_s
        self.in_flight = 0
        self._hold = _Hold(self)

    def hold(self) -> _Hold:
        return self._hold

    def _enter(self) -> None:
        if self._limit and self.in_flight >= self._limit:
            raise errors.UnavailableError(
                f"the gateway is at its limit of {self._limit} concurrent invocations; retry later",
                retry_after_s=self._retry_after_s,
            )
        self.in_flight += 1


class _Hold:
    __slots__ = ("_owner",)

    def __init__(self, owner: ConcurrencyLimit) -> None:
        self._owner = owner

    def __enter__(self) -> None:
        self._owner._enter()

    def __exit__(self, *exc: object) -> None:
        self._owner.in_flight -= 1
