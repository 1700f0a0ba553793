"""The reconciler: instance records -> function status, and instance counts -> targets.

Level-triggered and idempotent (compute.md 6.0): each pass
1. fails the live instances of clusters whose agent stopped sending heartbeats ("agent lost"),
2. terminates instances that were released before any agent picked them up,
3. for every deployment, recomputes the version's status from its instance records
   (`services.status.next_status`) and places or releases instances so that each GPU spec has
   `target_instances` live desired instances (`services.status.instance_delta`),
4. kicks the agents of every cluster whose assignments changed.

A pass runs every `reconcile_interval_s` and at once after `wake()`, which the services that change
what should run (an instance report, a deployment, a PATCH, a registered cluster, the autoscaler's
target) are built with, so a status follows a report within a second.

With several control-plane replicas only the holder of the control lease (`db/lease.py`) runs passes.
A replica that is woken without the lease hands the wake to the holder through `wake_peers` (a NATS
broadcast the role wires in; the holder's `wake_from_peer` receives it); a wake lost on the way only
waits for the holder's next periodic pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from fnplane.control.db.lease import Lease, LocalLease
from fnplane.control.db.repositories import deployments as deployments_repo
from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.db.repositories import instances as instances_repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.deployments import DeploymentRecord
from fnplane.control.db.repositories.instances import InstanceRow
from fnplane.control.db.repositories.transactions import Connection, Database
from fnplane.control.services import instances as instances_service
from fnplane.control.services import placement
from fnplane.control.services.notify import ClusterNotifier
from fnplane.control.services.status import SpecCounts, instance_delta, next_status
from fnplane.control.settings import ControlSettings
from fnplane.shared.loop import within
from fnplane.shared.models.compute import InstanceState
from fnplane.shared.models.functions import FunctionStatus

log = logging.getLogger(__name__)

WakePeers = Callable[[], Awaitable[None]]

# victims on scale-down: not yet started first, then starting, then the oldest running (NVCF)
_VICTIM_ORDER = {
    InstanceState.REQUESTED.value: 0,
    InstanceState.STARTING.value: 1,
    InstanceState.RUNNING.value: 2,
}


def _counts(
    spec: deployments_repo.GpuSpecRecord, rows: list[InstanceRow], window_start: datetime
) -> SpecCounts:
    mine = [r for r in rows if r.gpu_specification_id == spec.gpu_specification_id]
    failed = [r for r in mine if r.state == InstanceState.FAILED.value]
    return SpecCounts(
        min_instances=spec.min_instances,
        target=spec.target_instances,
        running=sum(r.state == InstanceState.RUNNING.value for r in mine),
        pending=sum(r.state in (InstanceState.REQUESTED.value, InstanceState.STARTING.value) for r in mine),
        desired_live=sum(r.desired and r.state in instances_repo.LIVE_STATES for r in mine),
        failed=len(failed),
        recent_failures=sum(r.updated_at >= window_start for r in failed),
    )


async def reconcile_deployment(
    conn: Connection, deployment: DeploymentRecord, settings: ControlSettings, now: datetime
) -> set[str]:
    """One deployment: new status and instance counts; the ids of clusters whose assignments changed."""
    version = await functions_repo.get_version(conn, deployment.version_id)
    if version is None:
        return set()
    specs = await deployments_repo.specs_of(conn, deployment.deployment_id)
    rows = await instances_repo.of_deployment(conn, deployment.deployment_id)
    window_start = now - timedelta(seconds=settings.instance_failure_window_s)
    counts = [_counts(spec, rows, window_start) for spec in specs]
    current = FunctionStatus(version.status)
    status = next_status(current, counts)
    changed = await _place_and_release(conn, deployment, settings, now, status, specs, counts, rows)
    if status is FunctionStatus.DEGRADED and changed:
        # its last instance went away and replacements were placed in this same pass: it is recovering
        # (DEGRADING, still invoked; requests wait for the new instances), not without instances (a
        # DEGRADED version refuses requests) for the moment until the next pass counts them
        status = FunctionStatus.DEGRADING
    if status != current:
        log.info("version %s: %s -> %s", version.version_id, current.value, status.value)
        await functions_repo.set_status(conn, version.version_id, status.value, now)
    return changed


async def _place_and_release(
    conn: Connection,
    deployment: DeploymentRecord,
    settings: ControlSettings,
    now: datetime,
    status: FunctionStatus,
    specs: list[deployments_repo.GpuSpecRecord],
    counts: list[SpecCounts],
    rows: list[InstanceRow],
) -> set[str]:
    """Instances placed or released so each spec has its target; the clusters whose assignments changed."""
    changed: set[str] = set()
    for spec, spec_counts in zip(specs, counts, strict=True):
        delta = instance_delta(status, spec_counts, failure_limit=settings.instance_failure_limit)
        if delta > 0:
            placed = await placement.place(
                conn,
                deployment=deployment,
                spec=spec,
                count=delta,
                now=now,
                heartbeat_timeout_s=settings.agent_heartbeat_timeout_s,
            )
            changed.update(r.cluster_id for r in placed)
        elif delta < 0:
            live = [
                r
                for r in rows
                if r.gpu_specification_id == spec.gpu_specification_id
                and r.desired
                and r.state in instances_repo.LIVE_STATES
            ]
            live.sort(
                key=lambda r: (
                    _VICTIM_ORDER[r.state],
                    r.created_at if r.state != "running" else r.started_at or r.created_at,
                )
            )
            for victim in live[:-delta]:
                await instances_repo.update_instance(conn, victim.instance_id, desired=False, updated_at=now)
                changed.add(victim.cluster_id)
    return changed


async def _terminate_unclaimed(conn: Connection, settings: ControlSettings, now: datetime) -> set[str]:
    """Released before an agent started them: after a heartbeat period nobody will report on them."""
    cutoff = now - timedelta(seconds=settings.agent_heartbeat_timeout_s)
    changed = set()
    for row in await instances_repo.live(conn):
        if row.state == InstanceState.REQUESTED.value and not row.desired and row.updated_at < cutoff:
            await instances_repo.update_instance(
                conn, row.instance_id, state=InstanceState.TERMINATED.value, updated_at=now, terminated_at=now
            )
            changed.add(row.cluster_id)
    return changed


class Reconciler:
    """Runs reconcile passes: periodically and whenever woken. start() / wake() / aclose()."""

    def __init__(
        self,
        database: Database,
        settings: ControlSettings,
        notifier: ClusterNotifier,
        lease: Lease | None = None,
        wake_peers: WakePeers | None = None,
    ) -> None:
        self._database = database
        self._settings = settings
        self._notifier = notifier
        self._lease: Lease = lease or LocalLease()
        self._wake_peers = wake_peers
        self._wake = asyncio.Event()
        # a wake of our own that the lease holder has yet to hear of (we do not hold the lease)
        self._forward = False
        self._task: asyncio.Task[None] | None = None
        self.passes = 0

    def wake(self) -> None:
        """Run a pass soon: here if this replica holds the lease, else on the holder."""
        self._forward = True
        self._wake.set()

    def wake_from_peer(self) -> None:
        """Another replica was woken (only the holder acts on it; nothing is passed on again)."""
        if self._lease.held:
            self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fnplane-reconciler")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                await self._cycle()
            except asyncio.CancelledError:
                raise
            except Exception:  # supervisor: a failed pass (database hiccup) is logged and retried next period
                if _being_cancelled():
                    # a driver turned our cancellation into its own error (the likely cause of a CI teardown
                    # that waited 120 s for this loop on a dropped PostgreSQL database); a stop ends the loop
                    raise asyncio.CancelledError from None
                log.exception("reconcile pass failed")
            try:
                await within(self._wake.wait(), self._settings.reconcile_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _cycle(self) -> None:
        forward, self._forward = self._forward, False
        if self._lease.held:
            await self.run_once()
        elif forward and self._wake_peers is not None:
            await within(self._wake_peers(), self._settings.reconcile_interval_s)

    async def run_once(self) -> None:
        """One full pass (also callable directly, e.g. by tests that drive time themselves)."""
        now = now_utc()
        changed: set[str] = set()
        async with self._database.transaction() as conn:
            lost = await instances_service.fail_instances_of_lost_clusters(
                conn, now=now, timeout_s=self._settings.agent_heartbeat_timeout_s
            )
            if lost:
                log.warning("agent lost: %d instance(s) marked failed", len(lost))
            changed |= await _terminate_unclaimed(conn, self._settings, now)
        async with self._database.reading() as conn:
            deployments = await deployments_repo.all_deployments(conn)
        for deployment in deployments:
            async with self._database.transaction() as conn:
                # re-read and lock inside the transaction: an undeploy deletes the row and releases the
                # instances in one transaction, so the pass sees all of that or none of it (reading the
                # instances just after an undeploy's commit placed a new one for a deleted deployment)
                fresh = await deployments_repo.by_id(conn, deployment.deployment_id, for_update=True)
                if fresh is not None:
                    changed |= await reconcile_deployment(conn, fresh, self._settings, now)
        self.passes += 1
        await self._notifier.clusters(changed)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
