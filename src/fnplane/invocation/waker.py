"""Scale from zero: the gateway's hint to the control plane that a version needs an instance.

One path: `POST {control_url}/v1/fnplane/versions/{vid}/wake` with the caller's bearer (the control plane
checks that the caller may invoke the version), at most once per `WAKE_INTERVAL_S` per version.

* `wake_if_idle()` (every admitted request): wake at once when no worker pulls the version's queue and
  none holds a request of it (one JetStream consumer lookup per `wake_probe_interval_s` per version,
  in the background);
* `wake()` (a request not picked up after `wake_after_s`): instances exist but are busy, or died.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from fnplane.invocation.settings import GatewaySettings
from fnplane.shared.control_urls import ControlUrls

log = logging.getLogger(__name__)

WAKE_INTERVAL_S = 5.0


class Waker:
    def __init__(self, settings: GatewaySettings, has_workers: Callable[[str], Awaitable[bool]]) -> None:
        self._settings = settings
        self._has_workers = has_workers
        self._woken: dict[str, float] = {}
        self._probed: dict[str, float] = {}
        # versions woken with no worker serving them: when (epoch seconds), until their first answer
        self._cold: dict[str, float] = {}
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._urls = ControlUrls(settings.control_url) if settings.control_url else None

    @property
    def enabled(self) -> bool:
        return bool(self._settings.control_url)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def wake_if_idle(self, version_id: str, bearer: str) -> None:
        now = time.monotonic()
        if (
            not self.enabled
            or self._woken.get(version_id, 0.0) > now
            or self._probed.get(version_id, 0.0) > now
        ):
            return
        self._probed[version_id] = now + self._settings.wake_probe_interval_s
        self._spawn(self._wake_if_no_workers(version_id, bearer))

    async def _wake_if_no_workers(self, version_id: str, bearer: str) -> None:
        if not await self._has_workers(version_id):
            self._cold.setdefault(version_id, time.time())
            self.wake(version_id, bearer)

    def answered(self, version_id: str) -> float | None:
        """A version answered: when it was woken from zero, if this is its first answer since (the
        time from there is the cold start a caller saw); else None."""
        return self._cold.pop(version_id, None) if self._cold else None

    def wake(self, version_id: str, bearer: str) -> None:
        now = time.monotonic()
        if not self.enabled or self._woken.get(version_id, 0.0) > now:
            return
        self._woken[version_id] = now + WAKE_INTERVAL_S
        self._spawn(self._post(version_id, bearer))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, version_id: str, bearer: str) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        assert self._urls is not None
        for base in self._urls.in_order():
            try:
                async with self._http.post(
                    f"{base}/v1/fnplane/versions/{version_id}/wake",
                    # aiohttp would label the empty body application/octet-stream, which the API refuses
                    headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=self._settings.wake_timeout_s),
                ) as resp:
                    if resp.status >= 400:
                        log.warning("wake hint for version %s answered %d", version_id, resp.status)
                    return
            except (aiohttp.ClientError, TimeoutError):  # that replica is down: the next one
                self._urls.unreachable(base)
