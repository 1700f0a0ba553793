"""The worker process beside one instance: `python -m fnplane.compute.worker` (settings from env).

It health-checks the function, owns the instance's request slots, reports health and busy time to the
agent (worker/events.py) and, once connected to NATS, runs the request puller of worker/requests.py, which
pulls only while the function is healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from fnplane.compute.worker.events import EventWriter
from fnplane.compute.worker.health import HealthMonitor, make_health_check
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.compute.worker.slots import Slots
from fnplane.shared import loop as event_loop
from fnplane.shared.models.compute import InstanceAssignment

log = logging.getLogger("fnplane.worker")


def _puller_class() -> Any | None:
    """The request puller of worker/requests.py, if that module exists in this build."""
    try:
        from fnplane.compute.worker import requests
    except ImportError:
        return None
    return getattr(requests, "RequestPuller", None)


class Worker:
    def __init__(self, settings: WorkerSettings, events: EventWriter | None = None) -> None:
        self.settings = settings
        self.assignment = InstanceAssignment.model_validate_json(settings.assignment)
        self.events = events or EventWriter()
        self.slots = Slots(self.assignment.max_request_concurrency)
        self.function_url = f"http://{settings.function_host}:{settings.function_port}"
        self.check = make_health_check(settings.function_host, settings.function_port, self.assignment.health)
        self.monitor = HealthMonitor(self.check, settings, self._on_health)
        self.nc: Any = None
        self.puller: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    async def _on_health(self, healthy: bool, detail: str) -> None:
        self.events.emit("health", healthy=healthy, detail=detail)
        if self.puller is not None:
            self.puller.set_ready(healthy)

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.monitor.run(), name="health"))
        self._tasks.append(asyncio.create_task(self._report_metrics(), name="metrics"))
        puller_class = _puller_class()
        if puller_class is not None and self.settings.nats_url:
            self._tasks.append(asyncio.create_task(self._start_puller(puller_class), name="puller"))

    async def _start_puller(self, puller_class: Any) -> None:
        import nats

        while self.nc is None:
            try:
                self.nc = await nats.connect(
                    self.settings.nats_url,
                    connect_timeout=self.settings.nats_connect_timeout_s,
                    max_reconnect_attempts=-1,
                    name=f"fnplane-worker-{self.assignment.instance_id}",
                    reconnected_cb=self._on_nats_reconnected,
                )
            except (OSError, TimeoutError, nats.errors.Error) as error:
                log.warning("worker cannot reach NATS at %s: %s", self.settings.nats_url, error)
                await asyncio.sleep(self.settings.health_poll_interval_s)
        # the puller reads its own FNPLANE_WORKER_* settings (WorkerRequestSettings) from the environment
        self.puller = puller_class(self.nc, self.assignment, self.function_url, self.slots)
        await self.puller.start()
        self.puller.set_ready(self.monitor.healthy)

    async def _on_nats_reconnected(self) -> None:
        log.warning("worker reconnected to NATS")
        if self.puller is not None:
            self.puller.reconnected()

    async def _report_metrics(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.metrics_interval_s)
            busy, invocations = self.slots.take_sample()
            now = time.monotonic()
            self.events.emit(
                "metrics",
                busySlotSeconds=round(busy, 6),
                slots=self.slots.count,
                invocations=invocations,
                intervalSeconds=round(now - last, 6),
            )
            last = now

    async def serve(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def aclose(self) -> None:
        for task in self._tasks:
            if task.get_name() != "puller" or self.puller is None:
                task.cancel()
        if self.puller is not None:
            self.puller.set_ready(False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.puller.aclose(), self.settings.stop_timeout_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.nc.close(), 5.0)
        aclose = getattr(self.check, "aclose", None)
        if aclose is not None:
            await aclose()


async def run_worker(settings: WorkerSettings) -> None:
    worker = Worker(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.request_stop)
    await worker.start()
    event_loop.freeze_startup_objects()
    try:
        await worker.serve()
    finally:
        await worker.aclose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    try:
        event_loop.run(run_worker(WorkerSettings()))
    except BrokenPipeError:
        # the agent is gone; nothing left to report to
        pass
