"""The worker process beside one instance: `python -m fnplane.compute.worker` (settings from env).

It health-checks the function, owns the instance's request slots, reports health and busy time to the
agent (worker/events.py) and, once connected to NATS, runs the request puller of worker/requests.py, which
pulls only while the function is healthy. It reports the function healthy only once that puller runs, so
a RUNNING instance can take a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from fnplane.compute.worker.bus import WorkerBus
from fnplane.compute.worker.events import EventWriter
from fnplane.compute.worker.health import HealthMonitor, make_health_check
from fnplane.compute.worker.requests import RequestPuller, worker_id
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.compute.worker.slots import Slots
from fnplane.shared import errors
from fnplane.shared import loop as event_loop
from fnplane.shared.loop import within
from fnplane.shared.models.compute import InstanceAssignment
from fnplane.telemetry import logs, tracing
from fnplane.telemetry.logs import LogSettings

log = logging.getLogger("fnplane.worker")
# a puller that could not start (buckets not there yet, a bus error) is tried again after this long
PULLER_RETRY_S = 2.0
# the worker's text lines, as they always were (the agent copies them to the instance's worker log)
TEXT_FORMAT = "%(asctime)s worker %(levelname)s %(message)s"


class Worker:
    def __init__(self, settings: WorkerSettings, events: EventWriter | None = None) -> None:
        self.settings = settings
        self.assignment = InstanceAssignment.model_validate_json(settings.assignment)
        self.events = events or EventWriter()
        self.slots = Slots(self.assignment.max_request_concurrency)
        self.function_url = f"http://{settings.function_host}:{settings.function_port}"
        self.check = make_health_check(settings.function_host, settings.health_port, self.assignment.health)
        self.monitor = HealthMonitor(self.check, settings, self._on_health)
        self.bus: WorkerBus | None = None
        self.puller: RequestPuller | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        # the bus connection was lost for good: the process exits non-zero and the agent restarts it
        self.failed = False

    async def _on_health(self, healthy: bool, detail: str) -> None:
        if self.puller is not None:
            self.puller.set_ready(healthy)
        elif healthy and self.settings.nats_url:
            # healthy, but not pulling yet: the instance is RUNNING (its version ACTIVE, a share of the
            # queue expected of it) only once it can take a request; _start_puller says so then
            return
        self.events.emit("health", healthy=healthy, detail=detail)

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.monitor.run(), name="health"))
        self._tasks.append(asyncio.create_task(self._report_metrics(), name="metrics"))
        if self.settings.nats_url:
            self._tasks.append(asyncio.create_task(self._start_puller(), name="puller"))

    async def _start_puller(self) -> None:
        """Connect and start pulling, retried until it works: NATS may be down, or the buckets not there
        yet (a gateway creates them; a worker's credential may not), as when an agent host comes up
        before any gateway. A start that failed once must not leave a worker that never pulls."""
        s = self.settings
        a = self.assignment
        while self.puller is None:
            if self.bus is None:
                try:
                    self.bus = await WorkerBus.connect(s.nats_url, a.version_id, worker_id(a), s)
                    self.bus.on_connection_lost = self._bus_lost
                except errors.UnavailableError as error:
                    log.warning("worker cannot reach NATS at %s: %s", s.nats_url, error)
                    await asyncio.sleep(s.health_poll_interval_s)
                    continue
            puller = RequestPuller(self.bus, a, self.function_url, self.slots, s)
            try:
                await puller.start()
            except Exception as error:  # supervisor: retried; the instance is not RUNNING meanwhile
                log.warning("worker cannot take requests yet, retrying: %r", error)
                with contextlib.suppress(Exception):
                    await puller.aclose()
                await asyncio.sleep(PULLER_RETRY_S)
                continue
            puller.on_unreachable = self.monitor.check_now
            self.puller = puller
        self.puller.set_ready(self.monitor.healthy)
        if self.monitor.healthy:
            self.events.emit("health", healthy=True, detail=self.monitor.last_detail)

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
                queueWaitSeconds=self.slots.queue_wait.take(),
                requestSeconds=self.slots.request_time.take(),
            )
            last = now

    def _bus_lost(self) -> None:
        # nats-py does not come back from a connection the server closed on an error: a worker left
        # like that would hold its slots and never pull again while its instance looks healthy
        self.failed = True
        self._stopped.set()

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
                await within(self.puller.aclose(), self.settings.stop_timeout_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.bus is not None:
            await self.bus.close_connection()
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
    if worker.failed:
        raise SystemExit(1)


def main() -> None:
    settings = WorkerSettings()
    a = InstanceAssignment.model_validate_json(settings.assignment)
    # FNPLANE_LOG_FORMAT and OTEL_* come with the agent's environment, which the worker inherits
    static = {"function_id": a.function_id, "function_version_id": a.version_id, "instance_id": a.instance_id}
    logs.configure_logging(
        "info", LogSettings().format, text_format=TEXT_FORMAT, static=static, batched=False
    )
    tracing.configure_tracing(
        "fnplane-worker",
        {
            "function_id": a.function_id,
            "function_version_id": a.version_id,
            "function_name": a.function_name,
            "nca_id": a.nca_id,
            "instance.id": a.instance_id,
            "instance.type": a.instance_type,
        },
    )
    log.info(
        "worker of instance %s started (function on port %s, health on port %s)",
        a.instance_id,
        settings.function_port,
        settings.health_port,
    )
    try:
        event_loop.run(run_worker(settings))
    except BrokenPipeError:
        # the agent is gone; nothing left to report to
        pass
    finally:
        tracing.shutdown_tracing()
