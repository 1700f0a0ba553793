"""One instance on this agent: its function (through the backend), its worker, and the failure rules.

Rules (reference/compute.md 1.4 and 1.6, adapted to processes; every threshold is an AgentSettings field):

* the function cannot be started (missing command, bad containerArgs) -> failed, `create-container-error`;
* the function exits -> restarted after a doubling backoff, keeping its port; more than `restart_limit`
  exits within `restart_window_s` -> failed, `container-restart-loop`;
* never healthy within `startup_timeout_s` of a launch -> failed, `degraded-worker`;
* healthy, then unhealthy for longer than `degradation_timeout_s` -> failed, `degraded-worker`.

A failed instance is stopped and reported with its cause and the last `error_log_bytes` of its stderr;
replacing it is the control plane's decision, as in NVCF. While unhealthy the instance is reported as
`starting` (it takes no work), so the function status the API shows is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fnplane.compute.backends.base import BackendError, ExitStatus, InstanceBackend, request_root
from fnplane.compute.backends.processes import ProcessTable, RotatingLog, stop_process_group
from fnplane.compute.credentials import remove_worker_credentials
from fnplane.compute.settings import AgentSettings
from fnplane.compute.worker.events import parse_event
from fnplane.compute.worker_metrics import WORKER_METRICS
from fnplane.shared.loop import within
from fnplane.shared.models.compute import InstanceAssignment, InstanceReport, InstanceState

log = logging.getLogger(__name__)

Reporter = Callable[[str, InstanceReport], Awaitable[None] | None]
# a start's progress (an image pull) is reported at most this often; the newest word always arrives
PROGRESS_REPORT_INTERVAL_S = 1.0
# a start not healthy after this long says what its health check answers (the deployment's healthInfo),
# so a version stuck DEPLOYING shows why; a start healthy sooner says nothing of its first failed checks
HEALTH_DETAIL_AFTER_S = 5.0
PrepareWorker = Callable[[InstanceAssignment], Awaitable[Path | None]]


@dataclass
class LoadSample:
    busy_slot_seconds: float = 0.0
    slot_seconds: float = 0.0
    invocations: int = 0


class InstanceSupervisor:
    def __init__(
        self,
        assignment: InstanceAssignment,
        *,
        backend: InstanceBackend,
        table: ProcessTable,
        settings: AgentSettings,
        report: Reporter,
        prepare_worker: PrepareWorker | None = None,
    ) -> None:
        self.assignment = assignment
        # before each worker start: the bus is ready for it; returns its credentials file
        self._prepare_worker = prepare_worker
        self.instance_id = assignment.instance_id
        self.backend = backend
        self.table = table
        self.settings = settings
        self._report_fn = report
        self.state = InstanceState.STARTING
        self.cause: str | None = None
        self.error_log: str | None = None
        # what the backend says a start is doing (an image pull's progress), reported while it lasts
        self.detail: str | None = None
        self._progress_task: asyncio.Task[None] | None = None
        self.restarts = 0
        self.port: int | None = None
        # where the worker health-checks the function: `port`, or the backend's second port for a
        # `health.port` other than the inference port
        self.health_port: int | None = None
        self.load = LoadSample()
        self.healthy = False
        # the newest answer of a failed health check, for the detail and the startup-timeout failure
        self._last_health: str | None = None
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._worker: asyncio.subprocess.Process | None = None
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._exit_task: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"instance-{self.instance_id}")

    @property
    def finished(self) -> bool:
        return self.state in (InstanceState.FAILED, InstanceState.TERMINATED)

    def report_now(self) -> InstanceReport:
        return InstanceReport(
            state=self.state,
            cause=self.cause,
            errorLog=self.error_log,
            restarts=self.restarts,
            detail=self.detail,
        )

    async def _report(self, state: InstanceState) -> None:
        self.state = state
        outcome = self._report_fn(self.instance_id, self.report_now())
        if outcome is not None:
            await outcome

    async def stop(self, *, report: bool = True) -> None:
        """Stop on purpose (undeploy, scale down, agent shutdown): `terminated`, unless it already failed."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # a start cut short (a pull under way) says nothing more
        await self._end_progress()
        await self._stop_processes()
        remove_worker_credentials(self.settings.state_dir, self.instance_id)
        if self.state != InstanceState.FAILED:
            self.state = InstanceState.TERMINATED
            if report:
                await self._report(InstanceState.TERMINATED)

    async def _stop_processes(self) -> None:
        if self._exit_task is not None:
            self._exit_task.cancel()
        # the worker first: it stops pulling at once and finishes the requests it holds, which need the
        # function alive (stopping both together turned those requests, and any pulled in the race, into
        # 500 connection errors instead of answers)
        await asyncio.gather(self._stop_worker(), return_exceptions=True)
        await asyncio.gather(self.backend.stop(self.instance_id), return_exceptions=True)

    # ---- the supervision loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        exits: deque[float] = deque()
        try:
            if not await self._launch():
                return
            await self._start_worker()
            await self._report(InstanceState.STARTING)
            launched_at = time.monotonic()
            unhealthy_since: float | None = None  # set when a healthy instance turns unhealthy
            while True:
                deadline = self._deadline(launched_at, unhealthy_since)
                try:
                    kind, value = await within(self._events.get(), max(deadline - time.monotonic(), 0))
                except TimeoutError:
                    await self._on_deadline(unhealthy_since)
                    return
                if kind == "health":
                    healthy, detail = value
                    self.healthy = healthy
                    if healthy:
                        unhealthy_since = None
                        self._last_health = None
                        if self.state != InstanceState.RUNNING:
                            await self._end_progress()
                            await self._report(InstanceState.RUNNING)
                    elif self.state == InstanceState.RUNNING and unhealthy_since is None:
                        unhealthy_since = time.monotonic()
                        self._last_health = detail or None
                        log.warning("instance %s unhealthy: %s", self.instance_id, detail)
                        await self._report(InstanceState.STARTING)
                    else:
                        self._last_health = detail or None
                        if detail and time.monotonic() - launched_at >= HEALTH_DETAIL_AFTER_S:
                            self._on_progress(f"health check: {detail}")
                elif kind == "worker-exit":
                    # our own sidecar died: restart it, the function itself is fine
                    log.warning("worker of instance %s exited (%s); restarting it", self.instance_id, value)
                    await asyncio.sleep(self.settings.health_poll_interval_s)
                    await self._start_worker()
                elif kind == "exit":
                    status: ExitStatus = value
                    self.healthy = False
                    now = time.monotonic()
                    exits.append(now)
                    while exits and now - exits[0] > self.settings.restart_window_s:
                        exits.popleft()
                    if len(exits) > self.settings.restart_limit:
                        await self._fail(
                            "container-restart-loop",
                            f"The function process exited {len(exits)} times within "
                            f"{self.settings.restart_window_s:g}s (last exit code {status.code}).",
                            status.stderr_tail,
                        )
                        return
                    self.restarts += 1
                    if self.state != InstanceState.STARTING:
                        await self._report(InstanceState.STARTING)
                    backoff = min(
                        self.settings.restart_backoff_initial_s * 2 ** (len(exits) - 1),
                        self.settings.restart_backoff_max_s,
                    )
                    log.warning(
                        "instance %s exited with %s; restart %d in %.1fs",
                        self.instance_id,
                        status.code,
                        self.restarts,
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    if not await self._launch():
                        return
                    launched_at, unhealthy_since = time.monotonic(), None
                    self._last_health = None
                    self._drop_stale_health()
                    await self._report(InstanceState.STARTING)
        except asyncio.CancelledError:
            raise
        except Exception:
            # a supervisor must not die silently: report the instance failed and let the control plane act
            log.exception("supervisor of instance %s crashed", self.instance_id)
            await self._fail(
                "system-error", "The agent's supervisor failed.", self.backend.stderr_tail(self.instance_id)
            )

    def _drop_stale_health(self) -> None:
        """Health verdicts queued before a relaunch describe the previous process."""
        kept = []
        while not self._events.empty():
            event = self._events.get_nowait()
            if event[0] != "health":
                kept.append(event)
        for event in kept:
            self._events.put_nowait(event)

    def _deadline(self, launched_at: float, unhealthy_since: float | None) -> float:
        if unhealthy_since is not None:
            return unhealthy_since + self.settings.degradation_timeout_s
        if self.state == InstanceState.RUNNING:
            return float("inf")
        return launched_at + self.settings.startup_timeout_s

    async def _on_deadline(self, unhealthy_since: float | None) -> None:
        if unhealthy_since is not None:
            sentence = f"The function was unhealthy for more than {self.settings.degradation_timeout_s:g}s."
        else:
            sentence = (
                f"The function did not pass its health check within {self.settings.startup_timeout_s:g}s."
            )
            if self._last_health:
                sentence += f" Last check: {self._last_health}."
        await self._fail("degraded-worker", sentence, self.backend.stderr_tail(self.instance_id))

    async def _launch(self) -> bool:
        try:
            handle = await self.backend.start(self.assignment, self._on_progress)
        except BackendError as error:
            await self._end_progress()
            await self._fail(error.cause, error.detail, self.backend.stderr_tail(self.instance_id))
            return False
        await self._end_progress()
        self.port = handle.port
        self.health_port = handle.health_port or handle.port
        self._exit_task = asyncio.create_task(self._watch_exit())
        return True

    def _on_progress(self, detail: str) -> None:
        """The backend's word on a start under way: reported as `starting` with it, at most once per
        PROGRESS_REPORT_INTERVAL_S (the newest word always goes out)."""
        self.detail = detail
        if self._progress_task is None or self._progress_task.done():
            self._progress_task = asyncio.create_task(self._report_progress())

    async def _report_progress(self) -> None:
        while True:
            said = self.detail
            await self._report(InstanceState.STARTING)
            await asyncio.sleep(PROGRESS_REPORT_INTERVAL_S)
            if self.detail == said:
                return

    async def _end_progress(self) -> None:
        """The start is over: no more progress reports, and the next report says nothing of it."""
        task, self._progress_task = self._progress_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.detail = None

    async def _watch_exit(self) -> None:
        status = await self.backend.wait(self.instance_id)
        await self._events.put(("exit", status))

    async def _fail(self, cause: str, sentence: str, stderr_tail: str) -> None:
        log.warning("instance %s failed (%s): %s", self.instance_id, cause, sentence)
        await self._stop_processes()
        self.cause = cause
        tail = stderr_tail[-self.settings.error_log_bytes :]
        # a start that failed before any output has only the backend's own line there: the sentence
        repeated = tail.strip() == sentence.strip()
        self.error_log = f"{sentence}\n{tail}" if tail and not repeated else sentence
        await self._report(InstanceState.FAILED)

    # ---- the worker beside the instance -------------------------------------------------------------

    async def _start_worker(self) -> None:
        creds = await self._prepare_worker(self.assignment) if self._prepare_worker is not None else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("FNPLANE_AGENT_")}
        settings = self.settings
        env.update(
            {
                # the credential travels only as a file: the path, never the content; the function's
                # environment (its secrets) and the registry login are none of the worker's business
                "FNPLANE_WORKER_ASSIGNMENT": self.assignment.model_dump_json(
                    by_alias=True, exclude={"nats_credentials", "registry_auth", "container_environment"}
                ),
                "FNPLANE_WORKER_NATS_CREDS": str(creds) if creds is not None else "",
                "FNPLANE_WORKER_FUNCTION_HOST": "127.0.0.1",
                "FNPLANE_WORKER_FUNCTION_PORT": str(self.port),
                "FNPLANE_WORKER_HEALTH_PORT": str(self.health_port),
                "FNPLANE_WORKER_NATS_URL": settings.nats_url,
                "FNPLANE_WORKER_NATS_CONNECT_TIMEOUT_S": str(settings.nats_connect_timeout_s),
                "FNPLANE_WORKER_HEALTH_POLL_INTERVAL_S": str(settings.health_poll_interval_s),
                "FNPLANE_WORKER_HEALTH_RECHECK_INTERVAL_S": str(settings.health_recheck_interval_s),
                "FNPLANE_WORKER_HEALTH_NOT_READY_GRACE_S": str(settings.health_not_ready_grace_s),
                "FNPLANE_WORKER_METRICS_INTERVAL_S": str(settings.metrics_interval_s),
                # the puller's drain (FNPLANE_WORKER_DRAIN_TIMEOUT_S) is the invocation plane's setting
                "FNPLANE_WORKER_STOP_TIMEOUT_S": str(settings.stop_grace_s),
                # the instance's request directory, which the function's sandbox binds read-write
                "FNPLANE_WORKER_REQUEST_ROOT": str(request_root(settings.state_dir, self.instance_id)),
                "FNPLANE_WORKER_REQUEST_DIRS_SHARED": "true" if self.backend.shares_request_dirs else "false",
            }
        )
        process = await self.table.spawn(
            self.instance_id,
            "worker",
            [settings.worker_python or sys.executable, "-m", "fnplane.compute.worker"],
            env=env,
            cwd=settings.state_dir,
        )
        self._worker = process
        worker_log = RotatingLog(
            settings.state_dir / "logs" / f"{self.instance_id}.worker.log", settings.log_max_bytes, 1
        )
        assert process.stdout is not None and process.stderr is not None
        self._worker_tasks = [
            asyncio.create_task(self._read_worker_events(process, process.stdout)),
            asyncio.create_task(self._copy_worker_log(process.stderr, worker_log)),
        ]

    async def _read_worker_events(
        self, process: asyncio.subprocess.Process, stream: asyncio.StreamReader
    ) -> None:
        while line := await stream.readline():
            event = parse_event(line)
            if event is None:
                continue
            if event["event"] == "health":
                await self._events.put(("health", (bool(event.get("healthy")), str(event.get("detail", "")))))
            elif event["event"] == "metrics":
                slots = float(event.get("slots", 0))
                self.load.busy_slot_seconds += float(event.get("busySlotSeconds", 0.0))
                self.load.slot_seconds += slots * float(event.get("intervalSeconds", 0.0))
                self.load.invocations += int(event.get("invocations", 0))
                version = (self.assignment.function_id, self.assignment.version_id)
                WORKER_METRICS.record(self.instance_id, version, event)
        code = await process.wait()
        if not self._stopping:
            await self._events.put(("worker-exit", code))

    @staticmethod
    async def _copy_worker_log(stream: asyncio.StreamReader, worker_log: RotatingLog) -> None:
        try:
            while chunk := await stream.read(65536):
                worker_log.write(chunk)
        finally:
            worker_log.close()

    async def _stop_worker(self) -> None:
        process, self._worker = self._worker, None
        if process is None:
            return
        for task in self._worker_tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await stop_process_group(process, self.settings.stop_grace_s)
        self.table.forget(self.instance_id, "worker")
        WORKER_METRICS.worker_stopped(self.instance_id)

    def take_load(self) -> LoadSample:
        sample, self.load = self.load, LoadSample()
        return sample
