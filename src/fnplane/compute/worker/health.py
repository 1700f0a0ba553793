"""Health checks of the function, with worker-utils' semantics (reference/compute.md 1.5).

HTTP: GET `http://127.0.0.1:<port><uri>`; healthy iff the status is the expected one; 404 means "up but
not ready yet" (retried); any other status or a connection error fails the check at once.
gRPC: the standard `grpc.health.v1.Health/Check` on the port (uri and expected status are ignored).

`HealthMonitor` polls every `health_poll_interval_s` until the first success (startup), then rechecks every
`health_recheck_interval_s`; a failure is reported at once, a 404 only after it lasted
`health_not_ready_grace_s`. It reports its current verdict after every check (a level, not an edge).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from fnplane.compute.worker.settings import WorkerSettings
from fnplane.shared.loop import within
from fnplane.shared.models.compute import HealthCheck
from fnplane.shared.models.functions import request_target


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    # the server answered 404: up, not ready yet
    not_ready: bool
    detail: str


HealthCheckFn = Callable[[], Awaitable[HealthResult]]


class HttpHealthCheck:
    def __init__(self, host: str, port: int, health: HealthCheck) -> None:
        # the host and port are ours; the stored uri only ever becomes the path
        self.url = f"http://{host}:{port}{request_target(health.uri)}"
        self.expected = health.expected_status_code
        self.timeout_s = health.timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self) -> HealthResult:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            async with self._session.get(self.url, allow_redirects=False) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return HealthResult(False, False, f"GET {self.url}: {self._failure(error)}")
        if status == self.expected:
            return HealthResult(True, False, f"GET {self.url}: {status}")
        return HealthResult(False, status == 404, f"GET {self.url}: {status}, expected {self.expected}")

    def _failure(self, error: BaseException) -> str:
        """What a user fixes, in healthInfo: not aiohttp's repr of the exception."""
        cause = error.os_error if isinstance(error, aiohttp.ClientConnectorError) else error
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused: nothing listens on the port"
        if isinstance(error, TimeoutError):
            return f"no answer within {self.timeout_s:g}s (health.timeout)"
        return f"{type(error).__name__}: {error}".strip(": ")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def make_health_check(host: str, port: int, health: HealthCheck) -> HttpHealthCheck | HealthCheckFn:
    if health.protocol.upper() == "GRPC":
        from fnplane.compute.worker.grpc_health import GrpcHealthCheck

        return GrpcHealthCheck(host, port, health.timeout_s)
    return HttpHealthCheck(host, port, health)


class HealthMonitor:
    def __init__(
        self,
        check: HealthCheckFn,
        settings: WorkerSettings,
        on_change: Callable[[bool, str], Awaitable[None] | None],
    ) -> None:
        self.check = check
        self.settings = settings
        self.on_change = on_change
        self.healthy = False
        self.last_detail = ""
        self._check_now = asyncio.Event()

    def check_now(self) -> None:
        """Check without waiting out the interval (a request found the function unreachable)."""
        self._check_now.set()

    async def _set(self, healthy: bool, detail: str) -> None:
        # a level, reported after every check: a listener that missed a blip (a function restarted
        # between two checks) still learns the current state
        self.last_detail = detail
        self.healthy = healthy
        outcome = self.on_change(healthy, detail)
        if outcome is not None:
            await outcome

    async def run(self) -> None:
        """Forever: poll until healthy, recheck while healthy, back to polling after a failure."""
        not_ready_since: float | None = None
        while True:
            result = await self.check()
            self.last_detail = result.detail
            if result.ok:
                not_ready_since = None
                await self._set(True, result.detail)
            elif self.healthy and result.not_ready:
                now = time.monotonic()
                not_ready_since = not_ready_since or now
                if now - not_ready_since >= self.settings.health_not_ready_grace_s:
                    await self._set(False, result.detail)
            else:
                not_ready_since = None
                await self._set(False, result.detail)
            # a 404 in steady state is retried at the fast rate until the grace period ends
            steady = self.healthy and not_ready_since is None
            interval = (
                self.settings.health_recheck_interval_s if steady else self.settings.health_poll_interval_s
            )
            self._check_now.clear()
            with contextlib.suppress(TimeoutError):
                await within(self._check_now.wait(), interval)
