"""The worker's request puller: takes requests of its version only while a slot is free.

`RequestPuller(bus, assignment, function_url, slots, settings)` is owned by the worker process
(compute/worker/main.py): `start()`, `set_ready(ready)`, `aclose()`.

It keeps as many messages requested from JetStream as it has free slots (worker/bus.py does the pull
bookkeeping), runs each delivered request in a tracked task (worker/forwarder.py; a gRPC session:
worker/grpc_sessions.py, holding its slot until the session ends), and while it runs sends
keepalives: `in_progress` acks (JetStream redelivers the message to another instance if this process
dies) and heartbeats to the gateway, one timer for all requests. It acks at the end once the
caller has its answer, so abandoned work is never run twice; a request whose caller could not even be
told that it failed is nak'd and redelivered instead. Cancel broadcasts stop a request (and free its
slot at once); a detached one only on an explicit cancel.

Cost per request matters here: the end of a request publishes its last response message, its ack and
the pull that re-offers the freed slot in the same event-loop step, so the NATS client writes them to
the socket together (one system call and one wake-up of the server, not three).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from fnplane.compute.worker.bus import Delivery, WorkerBus
from fnplane.compute.worker.forwarder import Forwarder
from fnplane.compute.worker.function_client import FunctionClient
from fnplane.compute.worker.grpc_sessions import GrpcSessions
from fnplane.compute.worker.http_pool import FunctionUnreachable
from fnplane.compute.worker.observation import WorkObservation
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.compute.worker.slots import Slots
from fnplane.shared import wire
from fnplane.shared.loop import within
from fnplane.shared.models.compute import InstanceAssignment

log = logging.getLogger(__name__)

# a gateway asking for heartbeats more often than this gets them this often
MIN_HEARTBEAT_S = 0.05
# a request whose caller could not be told it failed comes back after this long
REDELIVERY_DELAY_S = 1.0


def worker_id(assignment: InstanceAssignment) -> str:
    """Unique per worker process: its pull and credit inboxes (under its instance's subjects)."""
    return f"{assignment.instance_id}.{uuid.uuid4().hex[:8]}"


class _Running:
    __slots__ = ("delivery", "due", "interval")

    def __init__(self, delivery: Delivery, interval: float, now: float) -> None:
        self.delivery = delivery
        self.interval = interval
        self.due = now + interval


class RequestPuller:
    def __init__(
        self,
        bus: WorkerBus,
        assignment: InstanceAssignment,
        function_url: str,
        slots: Slots,
        settings: WorkerSettings,
    ) -> None:
        self._bus = bus
        self._slots = slots
        self._settings = settings
        self._ready = False
        self._closing = False
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, _Running] = {}
        self._pull_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._keepalive_wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = FunctionClient(function_url, assignment, bus, settings)
        self._forwarder = Forwarder(bus, self._client, settings)
        target = function_url.removeprefix("http://").rstrip("/")
        self._sessions = GrpcSessions(bus, target, assignment, settings)
        bus.on_pull_state_changed = self._wake.set
        # called when a request found the function unreachable (the health monitor checks at once)
        self.on_unreachable: Callable[[], None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._forwarder.start()
        await self._bus.start(self._on_delivery, self._on_cancel)
        self._pull_task = asyncio.create_task(self._pull_loop(), name="pull")
        self._keepalive_task = asyncio.create_task(self._keepalive_loop(), name="keepalive")

    def set_ready(self, ready: bool) -> None:
        """Pull only while the function is healthy; requests delivered while not ready are nak'd."""
        self._ready = ready
        self._wake.set()

    async def aclose(self) -> None:
        self._closing = True
        self._ready = False
        if self._pull_task is not None:
            self._pull_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pull_task
        self._sessions.drain()  # idle sessions end now, busy ones after their last call
        await self._bus.aclose()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._settings.drain_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
        await self._forwarder.aclose()
        await self._client.aclose()

    # --- pulling -----------------------------------------------------------------------------------

    async def _pull_loop(self) -> None:
        while not self._closing:
            self._bus.forget_expired_pulls()
            await self._top_up()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await within(self._wake.wait(), timeout_s=self._settings.pull_expires_s / 2)

    async def _top_up(self) -> None:
        if self._ready and not self._closing:
            await self._bus.top_up(self._slots.free)

    async def _on_delivery(self, delivery: Delivery) -> None:
        if not self._ready or self._closing or self._slots.free <= 0:
            await delivery.nak()
            return
        await self._slots.acquire()
        rid = delivery.envelope.request_id
        assert self._loop is not None
        self._tasks[rid] = self._loop.create_task(self._handle(delivery), name=f"request-{rid}")

    async def _handle(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        rid = envelope.request_id
        interval = self._settings.progress_interval_s
        if envelope.heartbeat_s is not None:
            # the gateway's silence timeout lives in another process: it tells each request's pace
            interval = max(MIN_HEARTBEAT_S, min(interval, envelope.heartbeat_s))
        assert self._loop is not None
        self._running[rid] = _Running(delivery, interval, self._loop.time())
        if interval < self._settings.progress_interval_s:
            self._keepalive_wake.set()  # the loop may sleep longer than this request's first beat
        answered = True
        picked_up = time.time()
        self._slots.queue_wait.observe(max(0.0, picked_up - envelope.request_time))
        try:
            with WorkObservation(delivery):  # its ids on log lines, its span (tracing on)
                if envelope.mode is wire.InvocationMode.GRPC:
                    answered = await self._sessions.run(delivery)
                else:
                    answered = await self._forwarder.run(delivery)
        except FunctionUnreachable as exc:
            # the function is down (its process restarting): nothing reached it, so the request goes
            # back to the queue for this instance or another, and this one takes none until a health
            # check sees the function again (reference: an instance STARTING takes no work)
            log.warning("request %s back to the queue: %s", rid, exc)
            answered = False
            self._ready = False
            if self.on_unreachable is not None:
                self.on_unreachable()
        except asyncio.CancelledError:
            # a cancel broadcast ends this request's own task: finish normally so it is acked below;
            # on shutdown the cancellation propagates
            if self._closing:
                raise
        finally:
            self._slots.request_time.observe(time.time() - picked_up)
            self._running.pop(rid, None)
            self._tasks.pop(rid, None)
            self._slots.release()
            with contextlib.suppress(Exception):  # connection gone: the server redelivers or drops it
                if answered:
                    await delivery.ack()
                else:
                    await delivery.nak(REDELIVERY_DELAY_S)
            # same event-loop step as the last response message and the ack: one socket write
            await self._top_up()

    async def _keepalive_loop(self) -> None:
        """Keepalives for every running request, each at its interval.

        Requests due within half their interval beat together with the one that woke the loop, so a
        busy worker wakes a few times per interval, not once per request.
        """
        loop = asyncio.get_running_loop()
        wake = self._keepalive_wake
        while True:
            now = loop.time()
            next_due = now + self._settings.progress_interval_s
            for running in list(self._running.values()):
                if running.due - running.interval / 2 <= now:
                    running.due = now + running.interval
                    with contextlib.suppress(Exception):  # a missed keepalive is retried next interval
                        await running.delivery.keepalive(self._bus.nc)
                next_due = min(next_due, running.due)
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await within(wake.wait(), max(0.0, next_due - loop.time()))

    def _on_cancel(self, request_id: str, explicit: bool) -> None:
        """A cancel after a client disconnect or a gateway timeout leaves a detached request running
        (its caller polls for it); one the client asked for (DELETE) stops it too."""
        task = self._tasks.get(request_id)
        if task is not None and (explicit or not self._forwarder.is_detached(request_id)):
            task.cancel()
