"""The autoscaler: NVCF's decision rule (reference/compute.md section 3) and the loop that applies it.

* `decide_scaling(...)` is the pure rule: utilisation above 70 % -> x1.2 (ceil), below 30 % -> x0.8
  (floor, at least 1), optional stickiness (R of the last W samples must breach), and the only path to
  zero: not invoked within the idle window *and* a (decay-weighted) average below the scale-down threshold.
  A version whose GPU spec carries a CUSTOM `autoscalingConfiguration` (PATCH gpu-specifications) uses its
  factors, thresholds and stickiness.
* `WorkerLoadStore` receives what the agents report (`POST /v1/fnplane/clusters/{name}/metrics`, through
  `Autoscaler.record_metrics`) and turns it into one utilisation sample per `sample_step_s`.
* `Autoscaler` runs every `scaling_interval_s`: for each ACTIVE deployed version it decides, clamps to
  [sum of mins, sum of maxes] and spreads the new total over the specs
  (`DeploymentService.set_target_instances`, which wakes the reconciler).

Beyond NVCF: `Autoscaler.wake(version_id)` scales a version from zero at once when a request waits for
it (the gateway calls `POST /v1/fnplane/versions/{vid}/wake`), instead of after a metrics loop.
A queue-depth source, when given, counts a waiting request as an invocation too.

Several control-plane replicas: only the lease holder's cycles decide, but the agents' reports and
the wakes reach whichever replica they were sent to. Each replica passes what it learns on to the
others (`share_with_peers`, a NATS broadcast `fnplane control` wires in) and records theirs
(`observe_from_peer`), so every replica, the holder and whoever takes over from it, sees all of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from fnplane.control.db.lease import Lease, LocalLease
from fnplane.control.db.repositories import deployments as deployments_repo
from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.db.repositories import instances as instances_repo
from fnplane.control.db.repositories.deployments import GpuSpecRecord
from fnplane.control.db.repositories.transactions import Database
from fnplane.control.services.deployments import DeploymentService
from fnplane.shared import metrics
from fnplane.shared.loop import within
from fnplane.shared.models.compute import WorkerMetrics
from fnplane.shared.models.functions import FunctionStatus
from fnplane.shared.models.wire import duration_seconds

log = logging.getLogger(__name__)

QueueDepth = Callable[[str], Awaitable[int]]
SharePeers = Callable[[bytes], Awaitable[None]]
# a broadcast to the other replicas that takes longer than this is given up (they miss one sample)
_SHARE_TIMEOUT_S = 2.0


class AutoscalerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_AUTOSCALER_")

    # off: instance counts follow min/max and wake requests only
    enabled: bool = True
    # NVCF's scaling loop runs every 15 s
    scaling_interval_s: float = 15.0
    # one utilisation sample per step (NVCF: 1 minute) ...
    sample_step_s: float = 60.0
    # ... over this lookback (NVCF: 10 minutes)
    lookback_s: float = 600.0
    # no invocation for this long (and low load) -> scale to zero (NVCF: 30 min, platform-wide)
    idle_window_s: float = 1800.0
    # weight of older samples in the scale-to-zero average: exp(-decay x age in samples)
    decay_factor: float = 0.0


@dataclass(frozen=True)
class Stickiness:
    """Scale only if at least `required` of the last `window` samples breach the threshold."""

    window: int
    required: int


@dataclass(frozen=True)
class ScalingPolicy:
    scale_up_threshold: float = 70.0
    scale_down_threshold: float = 30.0
    scale_up_factor: float = 1.2
    scale_down_factor: float = 0.8
    scale_up_stickiness: Stickiness | None = None
    scale_down_stickiness: Stickiness | None = None
    decay_factor: float = 0.0

    @classmethod
    def from_configuration(
        cls, raw: dict[str, Any] | None, *, sample_step_s: float = 60.0, decay_factor: float = 0.0
    ) -> ScalingPolicy:
        """The policy of a stored `autoscalingConfiguration` (None = the platform defaults)."""
        base = cls(decay_factor=decay_factor)
        if not raw:
            return base
        up, down = raw.get("scaleUpDetails") or {}, raw.get("scaleDownDetails") or {}
        return cls(
            scale_up_threshold=float(up.get("threshold", base.scale_up_threshold)),
            scale_down_threshold=float(down.get("threshold", base.scale_down_threshold)),
            scale_up_factor=float(up.get("factor", base.scale_up_factor)),
            scale_down_factor=float(down.get("factor", base.scale_down_factor)),
            scale_up_stickiness=_stickiness(up.get("stickiness"), sample_step_s),
            scale_down_stickiness=_stickiness(down.get("stickiness"), sample_step_s),
            decay_factor=decay_factor,
        )


def _stickiness(raw: dict[str, Any] | None, sample_step_s: float) -> Stickiness | None:
    if not raw:
        return None
    # durations become whole samples, as NVCF turns them into whole minutes
    window = max(1, round(duration_seconds(raw["size"]) / sample_step_s))
    required = max(1, round(duration_seconds(raw["threshold"]) / sample_step_s))
    return Stickiness(window, min(required, window))


def _breached(samples: Sequence[float], stickiness: Stickiness | None, test: Callable[[float], bool]) -> bool:
    if stickiness is None:
        return test(samples[-1])
    return sum(1 for value in samples[-stickiness.window :] if test(value)) >= stickiness.required


def weighted_average(samples: Sequence[float], decay: float) -> float:
    """Oldest first; sample i weighs exp(-decay * (n-1-i))."""
    if not samples:
        return 0.0
    n = len(samples)
    weights = [math.exp(-decay * (n - 1 - i)) for i in range(n)]
    return sum(w * s for w, s in zip(weights, samples, strict=True)) / sum(weights)


def decide_scaling(
    current: int,
    samples: Sequence[float],
    *,
    recently_invoked: bool,
    last_requested: int | None = None,
    policy: ScalingPolicy | None = None,
) -> int | None:
    """Desired instances of one version, before clamping; None = no decision this cycle.

    `samples` are utilisation percentages (busy slot-seconds / slot-seconds x 100), oldest first.
    """
    policy = policy or ScalingPolicy()
    # new workers have not reported yet: do not undo the previous request
    if current == 0 and last_requested is not None and last_requested > 0:
        return None
    base = max(current, 1)
    if not samples:
        desired = base
    elif _breached(samples, policy.scale_up_stickiness, lambda v: v > policy.scale_up_threshold):
        desired = math.ceil(base * policy.scale_up_factor)
    elif _breached(samples, policy.scale_down_stickiness, lambda v: v < policy.scale_down_threshold):
        desired = max(1, math.floor(base * policy.scale_down_factor))
    else:
        desired = base
    if not recently_invoked and weighted_average(samples, policy.decay_factor) < policy.scale_down_threshold:
        desired = 0
    return desired


def distribute(specs: Sequence[GpuSpecRecord], total: int) -> dict[str, int]:
    """Spread a version's total over its specs: each gets its min, then earlier specs fill to max first."""
    ordered = sorted(specs, key=lambda s: (s.preferred_order, s.gpu_specification_id))
    low, high = sum(s.min_instances for s in ordered), sum(s.max_instances for s in ordered)
    remaining = min(max(total, low), high) - low
    targets: dict[str, int] = {}
    for spec in ordered:
        extra = min(remaining, spec.max_instances - spec.min_instances)
        targets[spec.gpu_specification_id] = spec.min_instances + extra
        remaining -= extra
    return targets


class WorkerLoadStore:
    """Utilisation reports of the agents, per version, kept for the lookback window (in memory)."""

    def __init__(self, settings: AutoscalerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        # version -> (time, busy slot-seconds, slot-seconds)
        self._reports: dict[str, deque[tuple[float, float, float]]] = defaultdict(deque)
        self._last_invoked: dict[str, float] = {}

    def record(self, metrics: WorkerMetrics) -> None:
        now = self.clock()
        for load in metrics.versions:
            capacity = load.instances * metrics.interval_s
            self._reports[load.version_id].append((now, min(load.busy_fraction, 1.0) * capacity, capacity))
            if load.invoked:
                self._last_invoked[load.version_id] = now
        self._prune(now)

    def note_invoked(self, version_id: str) -> None:
        self._last_invoked[version_id] = self.clock()

    def recently_invoked(self, version_id: str) -> bool:
        at = self._last_invoked.get(version_id)
        return at is not None and self.clock() - at < self.settings.idle_window_s

    def samples(self, version_id: str) -> list[float]:
        """Utilisation % per `sample_step_s` window with data, oldest first."""
        now, step = self.clock(), self.settings.sample_step_s
        windows = max(1, int(self.settings.lookback_s // step))
        busy, capacity = [0.0] * windows, [0.0] * windows
        for at, busy_s, capacity_s in self._reports.get(version_id, ()):
            index = int((now - at) // step)
            if 0 <= index < windows:
                busy[index] += busy_s
                capacity[index] += capacity_s
        return [100.0 * busy[i] / capacity[i] for i in range(windows - 1, -1, -1) if capacity[i] > 0]

    def _prune(self, now: float) -> None:
        for version_id, reports in list(self._reports.items()):
            while reports and now - reports[0][0] > self.settings.lookback_s:
                reports.popleft()
            if not reports:
                del self._reports[version_id]


class Autoscaler:
    def __init__(
        self,
        database: Database,
        deployments: DeploymentService,
        settings: AutoscalerSettings | None = None,
        *,
        store: WorkerLoadStore | None = None,
        queue_depth: QueueDepth | None = None,
        lease: Lease | None = None,
        share_with_peers: SharePeers | None = None,
    ) -> None:
        self._database = database
        # with several control-plane replicas, only the lease holder's cycles decide (db/lease.py)
        self._lease: Lease = lease or LocalLease()
        self._share_with_peers = share_with_peers
        # this replica's own broadcasts come back to it: recognised by this id and skipped
        self._origin = uuid.uuid4().hex
        self._deployments = deployments
        self.settings = settings or AutoscalerSettings()
        self.store = store or WorkerLoadStore(self.settings)
        self.queue_depth = queue_depth
        self._last_requested: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self._loop(), name="autoscaler")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scaling_interval_s)
            if not self._lease.held:
                continue
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # the loop is a supervisor: one bad cycle (database hiccup) must not end autoscaling
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None  # a driver turned our cancellation into its own
                log.exception("autoscaling cycle failed")

    async def record_metrics(self, metrics: WorkerMetrics) -> None:
        """What an agent reported about its workers' load (passed on to the other replicas)."""
        self.store.record(metrics)
        await self._share({"metrics": metrics.model_dump(mode="json", by_alias=True)})

    async def wake(self, version_id: str) -> bool:
        """A request waits for the version: count it as an invocation, so the version is not scaled
        straight back to zero, and request an instance at once if it has none; whether it did."""
        self.store.note_invoked(version_id)
        await self._share({"invoked": version_id})
        return await self.request_instance_now(version_id)

    def observe_from_peer(self, payload: bytes) -> None:
        """What another replica's `record_metrics` or `wake` learnt (its broadcast, received here)."""
        try:
            document = json.loads(payload)
            if document.get("origin") == self._origin:
                return
            if "metrics" in document:
                self.store.record(WorkerMetrics.model_validate(document["metrics"]))
            if isinstance(document.get("invoked"), str):
                self.store.note_invoked(document["invoked"])
        except (ValueError, AttributeError, ValidationError) as error:
            log.warning("unreadable observation from another replica: %s", error)

    async def _share(self, observation: dict[str, Any]) -> None:
        if self._share_with_peers is None:
            return
        payload = json.dumps({"origin": self._origin, **observation}).encode()
        try:
            await within(self._share_with_peers(payload), _SHARE_TIMEOUT_S)
        except (TimeoutError, OSError) as error:
            log.warning("could not pass an observation on to the other replicas: %s", error)

    async def request_instance_now(self, version_id: str) -> bool:
        """Scale an ACTIVE version with no live instance to one instance at once; whether it did.

        `wake` calls this when a request waits for a version that has no instance, so scale-from-zero
        does not wait for the next scaling cycle.
        """
        async with self._database.reading() as conn:
            version = await functions_repo.get_version(conn, version_id)
            deployment = await deployments_repo.by_version(conn, version_id)
            if version is None or deployment is None or version.status != FunctionStatus.ACTIVE.value:
                return False
            specs = await deployments_repo.specs_of(conn, deployment.deployment_id)
            live = [
                r
                for r in await instances_repo.of_version(conn, version_id)
                if r.desired and r.state in instances_repo.LIVE_STATES
            ]
        if live or any(spec.target_instances > 0 for spec in specs):
            return False
        for spec_id, target in distribute(specs, 1).items():
            if target > 0:
                await self._deployments.set_target_instances(spec_id, target)
                return True
        return False

    async def run_once(self) -> dict[str, int]:
        """One scaling cycle; the new totals of the versions whose target changed."""
        changed: dict[str, int] = {}
        async with self._database.reading() as conn:
            versions = await functions_repo.versions_with_status(conn, [FunctionStatus.ACTIVE.value])
            plans = []
            for version in versions:
                deployment = await deployments_repo.by_version(conn, version.version_id)
                if deployment is None:
                    continue
                specs = await deployments_repo.specs_of(conn, deployment.deployment_id)
                rows = await instances_repo.of_version(conn, version.version_id)
                current = sum(1 for r in rows if r.desired and r.state in instances_repo.LIVE_STATES)
                plans.append((version.function_id, version.version_id, specs, current))
        for function_id, version_id, specs, current in plans:
            total = await self._decide(version_id, specs, current)
            if total is None:
                continue
            metrics.AUTOSCALER_CURRENT.labels(function_id, version_id).set(current)
            metrics.AUTOSCALER_DESIRED.labels(function_id, version_id).set(total)
            samples = self.store.samples(version_id)
            if samples:
                metrics.AUTOSCALER_UTILIZATION.labels(function_id, version_id).set(samples[-1])
            targets = distribute(specs, total)
            if all(targets[s.gpu_specification_id] == s.target_instances for s in specs):
                continue
            for spec in specs:
                if targets[spec.gpu_specification_id] != spec.target_instances:
                    await self._deployments.set_target_instances(
                        spec.gpu_specification_id, targets[spec.gpu_specification_id]
                    )
            changed[version_id] = sum(targets.values())
            metrics.AUTOSCALER_DECISIONS.labels("up" if changed[version_id] > current else "down").inc()
            log.info(
                "autoscaler: version %s from %d to %d instance(s)", version_id, current, changed[version_id]
            )
        return changed

    async def _decide(self, version_id: str, specs: Sequence[GpuSpecRecord], current: int) -> int | None:
        if self.queue_depth is not None:
            try:
                if await within(self.queue_depth(version_id), 5.0) > 0:
                    self.store.note_invoked(version_id)
            except (TimeoutError, OSError) as error:
                log.warning("queue depth of %s unknown: %s", version_id, error)
        recently_invoked = self.store.recently_invoked(version_id)
        if current == 0 and not recently_invoked:
            # nothing runs and nobody asked: nothing to decide (NVCF only scales recently invoked versions)
            return None
        custom = next((s.autoscaling_configuration for s in specs if s.autoscaling_configuration), None)
        policy = ScalingPolicy.from_configuration(
            custom, sample_step_s=self.settings.sample_step_s, decay_factor=self.settings.decay_factor
        )
        desired = decide_scaling(
            current,
            self.store.samples(version_id),
            recently_invoked=recently_invoked,
            last_requested=self._last_requested.get(version_id),
            policy=policy,
        )
        if desired is not None:
            self._last_requested[version_id] = desired
        return desired
