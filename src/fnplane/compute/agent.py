"""The compute-plane agent: one per host (or cluster), `Agent(AgentSettings(...))`.

It registers its cluster and GPU inventory with the control plane (the PUT is repeated as a heartbeat),
learns the instances placed on it (a NATS kick on `subjects.cluster_changed`, plus polling as a fallback),
runs each through the backend with a supervisor and a worker beside it, and reports instance states back.
Assignments are level-triggered: every sync compares what the control plane wants and knows with what
runs here, and re-reports whatever the control plane has wrong, so a lost report heals itself.

On start the agent stops every process an earlier run of it left behind (state file + environment
marker): the control plane's assignments then start fresh instances. Nothing is re-adopted, so an agent
crash never leaves an unsupervised function serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from fnplane.bus.connection import BusCredential, NatsError, connect
from fnplane.bus.topology import ensure_version_queue
from fnplane.compute.backends.container import ContainerBackend, ContainerLimits
from fnplane.compute.backends.gpus import GpuPool
from fnplane.compute.backends.local import LocalProcessBackend
from fnplane.compute.backends.sandbox import select_sandbox
from fnplane.compute.control_client import ControlPlaneClient, ControlPlaneError
from fnplane.compute.credentials import write_worker_credentials
from fnplane.compute.settings import AgentSettings
from fnplane.compute.supervisor import InstanceSupervisor
from fnplane.shared import subjects
from fnplane.shared.errors import FnplaneError
from fnplane.shared.loop import within
from fnplane.shared.models.compute import (
    ClusterRegistration,
    InstanceAssignment,
    InstanceReport,
    InstanceState,
    VersionLoad,
    WorkerMetrics,
)
from fnplane.shared.models.logs import InstanceLogsChunk, InstanceLogsRequest

log = logging.getLogger(__name__)

_ENDED = (InstanceState.FAILED, InstanceState.TERMINATED)


class Agent:
    def __init__(self, settings: AgentSettings, nats_credential: BusCredential = None) -> None:
        """`nats_credential`: the agent's bus credential (default: the file `settings.nats_creds`)."""
        self.settings = settings
        if nats_credential is None and settings.nats_creds is not None:
            nats_credential = settings.nats_creds
        self._nats_credential = nats_credential
        self.name = settings.cluster_name
        self.agent_id = settings.effective_agent_id
        self.backend: LocalProcessBackend | ContainerBackend = build_backend(settings, self.agent_id)
        self.control = ControlPlaneClient(settings.control_url, settings.token, settings.http_timeout_s)
        self.supervisors: dict[str, InstanceSupervisor] = {}
        self.registered = False
        self.nc: Any = None
        self._kick = asyncio.Event()
        self._stop = asyncio.Event()
        self._pending_reports: dict[str, InstanceReport] = {}
        self._reports_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._metrics_at = time.monotonic()
        self._shared_credential_logged = False

    @property
    def ready(self) -> bool:
        """Registered with the control plane at least once (what `GET /health` of `fnplane up` needs)."""
        return self.registered

    # ---- lifecycle ----------------------------------------------------------------------------------

    @property
    def isolation(self) -> str:
        """How function processes are kept from the platform (`GET /health` of `fnplane up`)."""
        return self.backend.isolation

    async def start(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        s = self.settings
        if isinstance(self.backend, ContainerBackend):
            # no runtime answering is a start failure (ContainerRuntimeError), as a missing sandbox is
            await self.backend.connect()
            log.info("functions run as containers through %s", self.backend.url)
        else:
            self.backend.sandbox = await asyncio.to_thread(
                select_sandbox, s.sandbox, executable=s.sandbox_bwrap, tmpfs_bytes=s.sandbox_tmpfs_bytes
            )
            if self.backend.sandbox is not None:
                log.info("function processes run in a %s sandbox", self.backend.isolation)
        earlier = await self.backend.cleanup()
        if earlier:
            log.warning(
                "stopped %d instance(s) left by an earlier run of agent %s", len(earlier), self.agent_id
            )
        await self._connect_nats()
        with contextlib.suppress(ControlPlaneError):
            await self._register()
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="agent-heartbeat"),
            asyncio.create_task(self._sync_loop(), name="agent-sync"),
            asyncio.create_task(self._report_loop(), name="agent-reports"),
            asyncio.create_task(self._metrics_loop(), name="agent-metrics"),
        ]

    async def serve(self) -> None:
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    async def aclose(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        # every function process goes, in parallel; then tell the control plane (best effort)
        supervisors = list(self.supervisors.values())
        await asyncio.gather(*(s.stop(report=False) for s in supervisors), return_exceptions=True)
        await self.backend.aclose()
        for supervisor in supervisors:
            self._pending_reports[supervisor.instance_id] = supervisor.report_now()
        with contextlib.suppress(TimeoutError):
            await within(self._flush_reports(), self.settings.http_timeout_s)
        if self.nc is not None:
            with contextlib.suppress(TimeoutError, Exception):
                await within(self.nc.close(), 5.0)
        await self.control.aclose()

    # ---- NATS ---------------------------------------------------------------------------------------

    async def _connect_nats(self) -> None:
        try:
            self.nc = await connect(
                self.settings.nats_url,
                f"fnplane-agent-{self.name}",
                connect_timeout_s=self.settings.nats_connect_timeout_s,
                credential=self._nats_credential,
                inbox_prefix=subjects.agent_inbox_prefix(self.name),
            )
        except (OSError, TimeoutError, NatsError) as error:
            # polling still works; instance logs do not until NATS is back on the next start
            log.error("agent %s cannot reach NATS at %s: %s", self.name, self.settings.nats_url, error)
            return

        async def on_kick(_msg: Any) -> None:
            self._kick.set()

        async def on_logs(msg: Any) -> None:
            self._spawn(self._serve_logs(msg))

        await self.nc.subscribe(subjects.cluster_changed(self.name), cb=on_kick)
        await self.nc.subscribe(subjects.instance_logs(self.name), cb=on_logs)

    async def _prepare_worker(self, assignment: InstanceAssignment) -> Path | None:
        """Before a worker starts: its version's queue exists (a worker's credential may not create
        one), and the credentials file it connects with (None: it connects without one)."""
        if self.nc is not None and self.nc.is_connected:
            try:
                await ensure_version_queue(
                    self.nc, assignment.version_id, self.settings.nats_connect_timeout_s
                )
            except (TimeoutError, NatsError) as error:  # the worker checks again and the gateway creates it
                log.warning("queue of version %s not prepared: %r", assignment.version_id, error)
        if assignment.nats_credentials:
            return await asyncio.to_thread(
                write_worker_credentials, self.settings.state_dir, assignment.instance_id,
                assignment.nats_credentials,
            )  # fmt: skip
        if isinstance(self._nats_credential, Path):
            if not self._shared_credential_logged:
                self._shared_credential_logged = True
                log.warning(
                    "the control plane mints no worker credentials (no account signing key): workers "
                    "use the agent's own NATS credential and are not isolated from each other"
                )
            return self._nats_credential
        return None

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # ---- registration and heartbeat -----------------------------------------------------------------

    async def _register(self) -> None:
        registration = ClusterRegistration(
            agentId=self.agent_id,
            group=self.settings.group,
            region=self.settings.region,
            inventory=self.settings.effective_inventory(),
        )
        await self.control.register(self.name, registration)
        if not self.registered:
            log.info(
                "agent %s registered cluster %s at %s", self.agent_id, self.name, self.settings.control_url
            )
            self.registered = True
            self._kick.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            try:
                await self._register()
            except ControlPlaneError as error:
                log.warning("heartbeat of cluster %s failed: %s", self.name, error)

    # ---- assignments --------------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await within(self._kick.wait(), self.settings.poll_interval_s)
            self._kick.clear()
            try:
                await self.sync_once()
            except ControlPlaneError as error:
                log.warning("cannot fetch the assignments of cluster %s: %s", self.name, error)

    async def sync_once(self) -> None:
        assignments = (await self.control.assignments(self.name)).instances
        seen: set[str] = set()
        for assignment in assignments:
            seen.add(assignment.instance_id)
            self._apply(assignment)
        for instance_id, supervisor in list(self.supervisors.items()):
            if instance_id not in seen:
                # the control plane forgot it (deleted deployment): nothing of it may keep running
                del self.supervisors[instance_id]
                if not supervisor.finished:
                    self._spawn(supervisor.stop(report=False))

    def _apply(self, assignment: InstanceAssignment) -> None:
        supervisor = self.supervisors.get(assignment.instance_id)
        if assignment.desired:
            if supervisor is None:
                if assignment.state in _ENDED:
                    return
                supervisor = InstanceSupervisor(
                    assignment,
                    backend=self.backend,
                    table=self.backend.table,
                    settings=self.settings,
                    report=self._queue_report,
                    prepare_worker=self._prepare_worker,
                )
                self.supervisors[assignment.instance_id] = supervisor
                supervisor.start()
            elif assignment.state != supervisor.state:
                self._queue_report(assignment.instance_id, supervisor.report_now())
            return
        if supervisor is not None and not supervisor.finished:
            self._spawn(supervisor.stop())
        elif supervisor is not None:
            if assignment.state != supervisor.state:
                self._queue_report(assignment.instance_id, supervisor.report_now())
            else:
                del self.supervisors[assignment.instance_id]
        elif assignment.state not in _ENDED:
            self._queue_report(
                assignment.instance_id, InstanceReport.model_validate({"state": InstanceState.TERMINATED})
            )

    # ---- reports ------------------------------------------------------------------------------------

    def _queue_report(self, instance_id: str, report: InstanceReport) -> None:
        # the newest state wins: reports are levels, not events
        self._pending_reports[instance_id] = report
        self._reports_ready.set()

    async def _flush_reports(self) -> bool:
        failed = False
        for instance_id, report in list(self._pending_reports.items()):
            try:
                await self.control.report(instance_id, report)
            except ControlPlaneError as error:
                if " 404 " in str(error):
                    log.info("control plane no longer knows instance %s", instance_id)
                else:
                    log.warning("report of instance %s failed: %s", instance_id, error)
                    failed = True
                    continue
            if self._pending_reports.get(instance_id) is report:
                del self._pending_reports[instance_id]
        return not failed

    async def _report_loop(self) -> None:
        while True:
            await self._reports_ready.wait()
            self._reports_ready.clear()
            if not await self._flush_reports():
                await asyncio.sleep(1.0)
                self._reports_ready.set()

    # ---- metrics for the autoscaler -----------------------------------------------------------------

    def collect_metrics(self) -> WorkerMetrics:
        now = time.monotonic()
        interval, self._metrics_at = now - self._metrics_at, now
        busy: dict[str, float] = defaultdict(float)
        capacity: dict[str, float] = defaultdict(float)
        invoked: dict[str, bool] = defaultdict(bool)
        instances: dict[str, int] = defaultdict(int)
        for supervisor in self.supervisors.values():
            if supervisor.finished:
                continue
            version = supervisor.assignment.version_id
            sample = supervisor.take_load()
            instances[version] += 1
            busy[version] += sample.busy_slot_seconds
            capacity[version] += sample.slot_seconds
            invoked[version] = invoked[version] or sample.invocations > 0
        versions = [
            VersionLoad(
                functionVersionId=version,
                instances=count,
                busyFraction=(busy[version] / capacity[version]) if capacity[version] > 0 else 0.0,
                invoked=invoked[version],
            )
            for version, count in instances.items()
        ]
        return WorkerMetrics(intervalSeconds=interval, versions=versions)

    async def _metrics_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.metrics_interval_s)
            metrics = self.collect_metrics()
            if not metrics.versions:
                continue
            try:
                await self.control.metrics(self.name, metrics)
            except ControlPlaneError as error:
                log.warning("metrics of cluster %s not accepted: %s", self.name, error)

    # ---- instance logs over NATS --------------------------------------------------------------------

    async def _serve_logs(self, msg: Any) -> None:
        if not msg.reply:
            return
        try:
            request = InstanceLogsRequest.model_validate_json(msg.data)
        except ValueError:
            await self.nc.publish(
                msg.reply, InstanceLogsChunk(end=True, error="bad-request").model_dump_json().encode()
            )
            return
        if not self.backend.knows(request.instance_id):
            await self.nc.publish(
                msg.reply, InstanceLogsChunk(end=True, error="not-found").model_dump_json().encode()
            )
            return
        if not request.follow:
            lines = await self.backend.logs(request.instance_id, tail=request.tail)
            for start in range(0, len(lines), 500):
                chunk = InstanceLogsChunk(lines=lines[start : start + 500])
                await self.nc.publish(msg.reply, chunk.model_dump_json().encode())
            await self.nc.publish(msg.reply, InstanceLogsChunk(end=True).model_dump_json().encode())
            return
        cancelled = asyncio.Event()
        subscription = None
        if request.cancel_subject:

            async def on_cancel(_msg: Any) -> None:
                cancelled.set()

            subscription = await self.nc.subscribe(request.cancel_subject, cb=on_cancel)
        try:
            await within(self._stream_logs(request, msg.reply, cancelled), self.settings.log_follow_max_s)
        except TimeoutError:
            pass
        finally:
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, InstanceLogsChunk(end=True).model_dump_json().encode())

    async def _stream_logs(self, request: InstanceLogsRequest, reply: str, cancelled: asyncio.Event) -> None:
        # an answer at once, before any line: the instance may have written nothing yet
        await self.nc.publish(reply, InstanceLogsChunk().model_dump_json().encode())

        async def forward() -> None:
            # this task alone runs the generator, so cancelling it closes the generator too
            lines = self.backend.follow(request.instance_id, tail=request.tail)
            async with contextlib.aclosing(lines):  # type: ignore[type-var]  # an async generator
                async for line in lines:
                    await self.nc.publish(reply, InstanceLogsChunk(lines=[line]).model_dump_json().encode())

        forwarding = asyncio.create_task(forward())
        waiter = asyncio.create_task(cancelled.wait())
        try:
            done, _ = await asyncio.wait({forwarding, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if forwarding in done:
                forwarding.result()  # its error, if it had one
        finally:
            forwarding.cancel()
            waiter.cancel()
            await asyncio.wait({forwarding, waiter})


def build_backend(settings: AgentSettings, agent_id: str) -> LocalProcessBackend | ContainerBackend:
    """The backend `settings.backend` names (docs/backends.md)."""
    if settings.backend == "container":
        return ContainerBackend(
            state_dir=settings.state_dir,
            agent_id=agent_id,
            stop_grace_s=settings.stop_grace_s,
            host=settings.container_host,
            api_timeout_s=settings.container_api_timeout_s,
            limits=ContainerLimits(
                cpus=settings.container_cpus,
                cpus_default=settings.container_cpus_default,
                memory_bytes=settings.container_memory_bytes,
                memory_default_bytes=settings.container_memory_default_bytes,
            ),
            gpus=container_gpus(settings),
            labels=settings.container_labels,
            error_log_bytes=settings.error_log_bytes,
            log_max_bytes=settings.log_max_bytes,
            log_backups=settings.log_backups,
        )
    return LocalProcessBackend(
        state_dir=settings.state_dir,
        workdir=settings.workdir,
        agent_id=agent_id,
        stop_grace_s=settings.stop_grace_s,
        error_log_bytes=settings.error_log_bytes,
        log_max_bytes=settings.log_max_bytes,
        log_backups=settings.log_backups,
        # DIR (keys, secrets, database, NATS store) and the state directory under it; the agent's
        # token file
        hidden_paths=[
            settings.home,
            *settings.sandbox_hidden_paths,
            *([settings.token_file] if settings.token_file is not None else []),
        ],
        read_only_paths=settings.sandbox_read_only_paths,
        shared_paths=settings.sandbox_shared_paths,
    )


def container_gpus(settings: AgentSettings) -> GpuPool | None:
    """The real GPUs a container backend hands out (None: a fake pool, no GPU is requested)."""
    devices = settings.real_gpus()
    return None if devices is None else GpuPool(devices, settings.container_gpu_request)


async def run_agent(settings: AgentSettings) -> int:
    """`fnplane agent`: run one agent in the foreground until SIGINT/SIGTERM, then stop every instance.

    Exit code 1 when it cannot start (its state directory is held by another running agent).
    """
    agent = Agent(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, agent.request_stop)
    try:
        await agent.start()
    except FnplaneError as error:
        log.error("agent %s cannot start: %s", agent.name, error.detail)
        await agent.control.aclose()
        return 1
    try:
        await agent.serve()
    finally:
        await agent.aclose()
    return 0
