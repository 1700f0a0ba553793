"""The worker's request puller: takes requests of its version from JetStream only while a slot is free.

`RequestPuller(nc, assignment, function_url, slots, settings)` is owned by the worker process
(compute/worker/main.py): `start()`, `set_ready(ready)`, `reconnected()`, `aclose()`.

Pull model (NVCF's utils, reference/invocation.md 6.2): every instance of a version shares one durable
pull consumer. The puller keeps exactly as many messages requested from the server as it has free
slots: it publishes `$JS.API.CONSUMER.MSG.NEXT` pull requests (batch = newly free slots, expiring after
`pull_expires_s`) to one inbox and accounts for each delivered message and each expiry (status 408), so
a request never waits in a worker that has no slot for it, and a freed slot is re-offered at once.
Pull requests live on the server: after a reconnect (a restarted server) `reconnected()` forgets the
old ones and pulls again at once, after making sure the queue and its consumer still exist.

While it handles a request it sends `in_progress` acks (JetStream redelivers the message to another
instance if this process dies) and `alive` messages to the gateway (one timer for all requests); it acks
at the end, even on failure, so abandoned work is never run twice. Cancel broadcasts
(`cancel_subject(vid)`) stop a request.

Cost per request matters here (issue 4 item 10): the end of a request publishes its last response
message, its ack and the pull that re-offers the freed slot in the same event-loop step, so the NATS
client writes them to the socket together (one system call and one wake-up of the server, not three).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError as JsBadRequestError
from nats.js.errors import NotFoundError as JsNotFoundError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fnplane.compute.worker.forwarding import Forwarder, WorkerStores
from fnplane.compute.worker.slots import Slots
from fnplane.shared import subjects
from fnplane.shared.models.compute import InstanceAssignment
from fnplane.shared.models.invocation import (
    REQUEST_TTL_S,
    STATUS_TTL_S,
    InvocationEnvelope,
    request_consumer_config,
    request_stream_config,
)

log = logging.getLogger(__name__)


class WorkerRequestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_WORKER_")

    # JetStream redelivers a request whose worker went silent for this long (NVCF: 30 s)
    ack_wait_s: float = 30.0
    # in-progress acks to JetStream and `alive` messages to the gateway, this often
    progress_interval_s: float = 5.0
    # a pull request stays open on the server this long before it is renewed
    pull_expires_s: float = 5.0
    # response chunks in flight to the gateway before the worker waits for credit
    response_window_chunks: int = 16
    # no credit from the gateway for this long: the client is gone, stop
    credit_timeout_s: float = 60.0
    # one chunk of a large request body from the gateway
    body_pull_timeout_s: float = 10.0
    # used only when the worker has to create its version's queue (normally the gateway's values)
    max_queued_requests: int = 100_000
    max_message_bytes: int = 8 * 1024 * 1024
    # the queue's max age when the worker creates it (FNPLANE_GATEWAY_REQUEST_TTL_S, NVCF: 60 min)
    request_ttl_s: float = Field(default=REQUEST_TTL_S, gt=0, le=STATUS_TTL_S)
    # per-request NVCF-LARGE-OUTPUT-DIR and NVCF-ASSET-DIR live under these (default: temp dir)
    large_output_root: str = ""
    asset_root: str = ""
    # detached results up to this size go inline into the status bucket, bigger ones to the object store
    inline_result_bytes: int = 256 * 1024
    # how often the progress file is looked at while a pexec request runs
    progress_poll_s: float = 0.1
    # on aclose, in-flight requests get this long to finish before they are cancelled
    drain_timeout_s: float = 10.0
    # connecting to the function and to JetStream's API
    connect_timeout_s: float = 5.0
    # NVCF-ENV / NVCF-NSPECTID values given to the function
    environment: str = "local"
    nspect_id: str = ""


class _Pull:
    __slots__ = ("expires_at", "remaining")

    def __init__(self, remaining: int, expires_at: float) -> None:
        self.remaining = remaining
        self.expires_at = expires_at


# a gateway asking for heartbeats more often than this gets them this often
MIN_HEARTBEAT_S = 0.05


class _Running:
    __slots__ = ("alive", "due", "interval", "msg", "reply_to")

    def __init__(self, msg: Msg, reply_to: str, attempt: int, interval: float, now: float) -> None:
        self.msg = msg
        self.reply_to = reply_to
        self.alive = {subjects.HDR_KIND: subjects.KIND_ALIVE, subjects.HDR_ATTEMPT: str(attempt)}
        self.interval = interval
        self.due = now + interval


class RequestPuller:
    def __init__(
        self,
        nc: NATS,
        assignment: InstanceAssignment,
        function_url: str,
        slots: Slots,
        settings: WorkerRequestSettings | None = None,
    ) -> None:
        self._nc = nc
        self._assignment = assignment
        self._function_url = function_url.rstrip("/")
        self._slots = slots
        self._settings = settings or WorkerRequestSettings()
        self._version_id = assignment.version_id
        self._worker_id = f"{assignment.instance_id}-{uuid.uuid4().hex[:8]}"
        self._ready = False
        self._closing = False
        self._pulls: collections.deque[_Pull] = collections.deque()
        self._outstanding = 0
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, _Running] = {}
        self._pull_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._keepalive_wake = asyncio.Event()
        self._subs: list[object] = []
        self._session: aiohttp.ClientSession | None = None
        self._forwarder: Forwarder | None = None
        self._js: JetStreamContext | None = None
        self._check_queue = False
        self._pull_subject = subjects.pull_request_subject(self._version_id)
        self._inbox = subjects.worker_pull_inbox(self._worker_id)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        s = self._settings
        js = self._js = self._nc.jetstream(timeout=s.connect_timeout_s)
        await self._ensure_queue(js)
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout_s),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        )
        root = Path(tempfile.gettempdir()) / "fnplane"
        stores = WorkerStores(js)
        self._forwarder = Forwarder(
            nc=self._nc,
            session=self._session,
            stores=stores,
            assignment=self._assignment,
            function_url=self._function_url,
            worker_id=self._worker_id,
            settings=s,
            output_root=Path(s.large_output_root or root / "response"),
            asset_root=Path(s.asset_root or root / "inputAssets"),
        )
        self._subs.append(await self._nc.subscribe(self._inbox, cb=self._on_delivery))
        self._subs.append(
            await self._nc.subscribe(subjects.cancel_subject(self._version_id), cb=self._on_cancel)
        )
        self._subs.append(
            await self._nc.subscribe(subjects.worker_credits(self._worker_id), cb=self._forwarder.on_credit)
        )
        self._pull_task = asyncio.create_task(self._pull_loop(), name=f"pull-{self._version_id}")
        self._keepalive_task = asyncio.create_task(self._keepalive_loop(), name="keepalive")

    async def _ensure_queue(self, js: object) -> None:
        s = self._settings
        stream = subjects.request_stream(self._version_id)
        try:
            await js.stream_info(stream)  # type: ignore[attr-defined]
        except JsNotFoundError:
            config = request_stream_config(
                self._version_id, s.max_queued_requests, s.max_message_bytes, s.request_ttl_s
            )
            with contextlib.suppress(JsBadRequestError):  # created meanwhile by a gateway or a peer
                await js.add_stream(**config)  # type: ignore[attr-defined]
        with contextlib.suppress(JsBadRequestError):  # exists with another ack wait: keep it
            await js.add_consumer(stream, **request_consumer_config(s.ack_wait_s))  # type: ignore[attr-defined]

    def reconnected(self) -> None:
        """NATS is back: the pull requests the server held are gone with the old connection."""
        self._pulls.clear()
        self._outstanding = 0
        self._check_queue = True
        self._wake.set()

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
        for sub in self._subs:
            with contextlib.suppress(Exception):  # connection may already be closed
                await sub.unsubscribe()  # type: ignore[attr-defined]
        self._subs.clear()
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
        if self._session is not None:
            await self._session.close()

    # --- pulling -----------------------------------------------------------------------------------

    async def _pull_loop(self) -> None:
        s = self._settings
        while not self._closing:
            if self._check_queue and self._js is not None and self._nc.is_connected:
                try:
                    await self._ensure_queue(self._js)
                    self._check_queue = False
                except (TimeoutError, NatsError) as error:  # retried on the next turn
                    log.warning("cannot check the request queue after a reconnect: %r", error)
            now = time.monotonic()
            # a pull whose expiry status never came (reconnect, server restart) is forgotten
            while self._pulls and self._pulls[0].expires_at + 2.0 < now:
                self._outstanding -= self._pulls.popleft().remaining
            await self._top_up()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=s.pull_expires_s / 2)

    async def _top_up(self) -> None:
        """Ask the server for as many messages as there are free slots not yet offered."""
        want = self._slots.free - self._outstanding
        if not (self._ready and want > 0 and not self._closing and self._nc.is_connected):
            return
        s = self._settings
        # counted before the publish: a concurrent top-up while this one waits must not ask again
        pull = _Pull(want, time.monotonic() + s.pull_expires_s)
        self._pulls.append(pull)
        self._outstanding += want
        request = b'{"batch":%d,"expires":%d}' % (want, int(s.pull_expires_s * 1e9))
        try:
            await self._nc.publish(self._pull_subject, request, reply=self._inbox)
        except Exception:  # supervisor: a failed publish is retried on the pull loop's next turn
            log.exception("pull request failed")
            with contextlib.suppress(ValueError):
                self._pulls.remove(pull)
                self._outstanding -= pull.remaining
            self._wake.set()

    def _take_one(self) -> None:
        if self._pulls:
            head = self._pulls[0]
            head.remaining -= 1
            self._outstanding -= 1
            if head.remaining <= 0:
                self._pulls.popleft()

    async def _on_delivery(self, msg: Msg) -> None:
        headers = msg.headers
        if not msg.data and headers and subjects.HDR_STATUS in headers:
            status = headers[subjects.HDR_STATUS]
            if status == "100":
                return  # idle heartbeat
            if status in ("408", "404") and self._pulls:
                pull = self._pulls.popleft()
                self._outstanding -= pull.remaining
            elif status == "409":
                self._pulls.clear()
                self._outstanding = 0
            self._wake.set()
            return
        self._take_one()
        if not self._ready or self._closing or self._slots.free <= 0:
            await msg.nak()
            return
        await self._slots.acquire()
        try:
            envelope = InvocationEnvelope.model_validate_json(headers[subjects.HDR_ENVELOPE])  # type: ignore[index]
        except (KeyError, TypeError, ValueError):
            log.warning("dropping a request message without a valid envelope: %s", msg.subject)
            self._slots.release()
            await msg.term()
            return
        rid = envelope.request_id
        self._tasks[rid] = asyncio.create_task(self._handle(msg, envelope), name=f"request-{rid}")

    async def _handle(self, msg: Msg, envelope: InvocationEnvelope) -> None:
        assert self._forwarder is not None
        rid = envelope.request_id
        attempt = msg.metadata.num_delivered or 1
        interval = self._settings.progress_interval_s
        if envelope.heartbeat_s is not None:
            # the gateway's silence timeout lives in another process: it tells each request's pace
            interval = max(MIN_HEARTBEAT_S, min(interval, envelope.heartbeat_s))
        self._running[rid] = _Running(
            msg, envelope.reply_to, attempt, interval, asyncio.get_running_loop().time()
        )
        if interval < self._settings.progress_interval_s:
            self._keepalive_wake.set()  # the loop may sleep longer than this request's first beat
        try:
            await self._forwarder.run(envelope, msg.data, attempt)
        except asyncio.CancelledError:
            # a cancel broadcast ends this request's own task: finish normally so it is acked below;
            # on shutdown the cancellation propagates
            if self._closing:
                raise
        except Exception:  # supervisor of one request: log it, ack below, keep the worker serving
            log.exception("request %s failed", rid)
        finally:
            self._running.pop(rid, None)
            self._tasks.pop(rid, None)
            self._slots.release()
            with contextlib.suppress(Exception):  # connection gone: the server redelivers or drops it
                await msg.ack()
            # same event-loop step as the last response message and the ack: one socket write
            await self._top_up()

    async def _keepalive_loop(self) -> None:
        """`in_progress` acks and `alive` messages for every running request, each at its interval.

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
                        await running.msg.in_progress()
                        await self._nc.publish(running.reply_to, b"", headers=running.alive)
                next_due = min(next_due, running.due)
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.0, next_due - loop.time()))

    async def _on_cancel(self, msg: Msg) -> None:
        rid = msg.data.decode(errors="replace")
        task = self._tasks.get(rid)
        if task is not None and self._forwarder is not None and not self._forwarder.is_detached(rid):
            task.cancel()
