"""Instance records as the agents see them (shared.models.compute) and as users see them (InstanceDto).

`InstanceService`, the agents' use cases:

* `assignments(cluster)`: every live instance placed on the cluster, with what the agent needs to run
  it (secret values opened with the SecretBox);
* `apply_report(instance, report)`: the agent's state change (failed/terminated are final); wakes the
  reconciler.

Steps of other use cases, on the caller's transaction:

* `active_instances(conn, version)`: `activeInstances` of GET version (requested/starting/running, and
  still wanted: one released by an undeploy or a scale-down is stopping, not serving);
* `health_info(conn, deployment)`: the deployment's `healthInfo`, one entry per failed instance;
* `fail_instances_of_lost_clusters(conn, ...)`: the reconciler's "agent lost".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fnplane.control.db.repositories import clusters as clusters_repo
from fnplane.control.db.repositories import deployments as deployments_repo
from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.db.repositories import instances as instances_repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.clusters import ClusterRow
from fnplane.control.db.repositories.instances import LIVE_STATES, InstanceRow
from fnplane.control.db.repositories.transactions import Connection, Database
from fnplane.control.services.notify import WakeReconciler
from fnplane.control.services.registry_credentials import login_for_image
from fnplane.control.services.secret_box import SecretBox
from fnplane.shared import metrics
from fnplane.shared.errors import NotFoundError
from fnplane.shared.models.compute import (
    HealthCheck,
    InstanceAssignment,
    InstanceAssignments,
    InstanceReport,
    InstanceState,
)
from fnplane.shared.models.deployments import DeploymentHealthDto
from fnplane.shared.models.functions import (
    DEFAULT_HEALTH_PORT,
    DEFAULT_HEALTH_STATUS,
    DEFAULT_HEALTH_URI,
    InstanceDto,
    InstanceStatus,
)
from fnplane.shared.models.wire import duration_seconds

# The agent sends the last 1 KiB of stderr; keep a little more in case a backend sends more context.
MAX_ERROR_LOG_CHARS = 4096
# healthInfo lists the newest failures only
MAX_HEALTH_ENTRIES = 16
# a starting instance's detail is one line (a pull's progress)
MAX_DETAIL_CHARS = 512

_STATUS_OF = {
    InstanceState.REQUESTED.value: InstanceStatus.STARTING,
    InstanceState.STARTING.value: InstanceStatus.STARTING,
    InstanceState.RUNNING.value: InstanceStatus.RUNNING,
    InstanceState.FAILED.value: InstanceStatus.ERRORED,
    InstanceState.TERMINATED.value: InstanceStatus.TERMINATED,
}


def cluster_not_found(name: str) -> NotFoundError:
    return NotFoundError(f"Cluster '{name}' is not registered")


def _health(raw: dict[str, Any] | None, inference_port: int | None) -> HealthCheck:
    raw = raw or {}
    return HealthCheck(
        protocol=raw.get("protocol", "HTTP"),
        uri=raw.get("uri", DEFAULT_HEALTH_URI),
        port=raw.get("port", inference_port or DEFAULT_HEALTH_PORT),
        timeoutSeconds=duration_seconds(raw.get("timeout", "PT10S")),
        expectedStatusCode=raw.get("expectedStatusCode", DEFAULT_HEALTH_STATUS),
    )


# (version_id, instance_id) -> the .creds text of the instance's own NATS credential
IssueWorkerCredentials = Callable[[str, str], str]


async def _assignment(
    conn: Connection,
    cluster: ClusterRow,
    row: InstanceRow,
    box: SecretBox,
    issue_credentials: IssueWorkerCredentials | None,
) -> InstanceAssignment:
    version = await functions_repo.get_version(conn, row.version_id)
    spec = await deployments_repo.spec_by_id(conn, row.gpu_specification_id)
    environment: dict[str, str] = {}
    secrets: dict[str, Any] = {}
    if version is not None:
        environment = {e["key"]: e["value"] for e in version.container_environment or ()}
        # the only place secret values are opened: they go to the agent, which sets them on the process
        # (environment variables) and in its secrets file
        environment.update(box.open_all(version.version_id, version.secrets))
        secrets = box.open_values(version.version_id, version.secrets)
    # and the login for the image's registry: the agent sends it with the pull
    registry_auth = (
        await login_for_image(conn, box, version.nca_id, version.container_image)
        if version is not None and row.desired
        else None
    )
    return InstanceAssignment(
        instanceId=row.instance_id,
        functionId=row.function_id,
        functionVersionId=row.version_id,
        # a deleted version's instances are still listed (desired=false) until the agent stops them
        functionName=version.name if version else "",
        ncaId=row.nca_id,
        desired=row.desired,
        state=InstanceState(row.state),
        gpu=row.gpu,
        instanceType=row.instance_type,
        backend=cluster.group_name,
        region=cluster.region,
        containerImage=version.container_image if version else None,
        containerArgs=version.container_args if version else None,
        containerEnvironment=environment,
        secrets=secrets,
        inferenceUrl=version.inference_url if version else "/",
        inferencePort=version.inference_port if version else None,
        health=_health(version.health if version else None, version.inference_port if version else None),
        maxRequestConcurrency=spec.max_request_concurrency if spec else 1,
        # minted afresh on each listing; the agent uses the one it started the instance with
        natsCredentials=(
            issue_credentials(row.version_id, row.instance_id) if issue_credentials and row.desired else None
        ),
        registryAuth=registry_auth,
    )


class InstanceService:
    def __init__(
        self,
        database: Database,
        box: SecretBox,
        wake_reconciler: WakeReconciler,
        issue_credentials: IssueWorkerCredentials | None = None,
    ) -> None:
        self._issue_credentials = issue_credentials
        self._database = database
        self._box = box
        self._wake_reconciler = wake_reconciler

    async def assignments(self, cluster_name: str) -> InstanceAssignments:
        async with self._database.reading() as conn:
            cluster = await clusters_repo.by_name(conn, cluster_name)
            if cluster is None:
                raise cluster_not_found(cluster_name)
            rows = await instances_repo.live_on_cluster(conn, cluster.cluster_id)
            return InstanceAssignments(
                instances=[
                    await _assignment(conn, cluster, row, self._box, self._issue_credentials) for row in rows
                ]
            )

    async def apply_report(self, instance_id: str, report: InstanceReport) -> InstanceRow:
        """Record a state change and wake the reconciler; reports about a failed or terminated instance
        change nothing."""
        row = await self._record(instance_id, report)
        self._wake_reconciler()
        return row

    async def _record(self, instance_id: str, report: InstanceReport) -> InstanceRow:
        now = now_utc()
        async with self._database.transaction() as conn:
            row = await instances_repo.get(conn, instance_id)
            if row is None:
                raise NotFoundError(f"Instance '{instance_id}' not found")
            if row.state not in LIVE_STATES:
                return row
            values: dict[str, Any] = {"updated_at": now}
            if report.restarts is not None:
                values["restarts"] = report.restarts
            if report.state in (InstanceState.STARTING, InstanceState.RUNNING):
                values["state"] = report.state.value
                # the newest word of a starting instance; a running one has nothing more to say
                detail = report.detail if report.state is InstanceState.STARTING else None
                values["detail"] = detail[:MAX_DETAIL_CHARS] if detail else None
                if row.started_at is None:
                    values["started_at"] = now
            elif report.state in (InstanceState.FAILED, InstanceState.TERMINATED):
                values.update(state=report.state.value, desired=False, terminated_at=now, detail=None)
                if report.cause is not None:
                    values["cause"] = report.cause
                if report.error_log is not None:
                    values["error_log"] = report.error_log[-MAX_ERROR_LOG_CHARS:]
            await instances_repo.update_instance(conn, instance_id, **values)
            updated = await instances_repo.get(conn, instance_id)
        assert updated is not None
        if report.state is InstanceState.RUNNING and row.state != InstanceState.RUNNING.value:
            if row.restarts == 0 and report.restarts in (None, 0):  # a first start, not a restart
                metrics.COLD_START.labels("deploy").observe((now - row.created_at).total_seconds())
        return updated


async def fail_instances_of_lost_clusters(conn: Connection, *, now: datetime, timeout_s: float) -> list[str]:
    """Live instances on clusters whose agent went silent are failed ("agent lost"); their version ids."""
    versions: list[str] = []
    for cluster in await clusters_repo.all_clusters(conn):
        last = cluster.last_heartbeat_at
        if last is not None and (now - last).total_seconds() <= timeout_s:
            continue
        for row in await instances_repo.live_on_cluster(conn, cluster.cluster_id):
            await instances_repo.update_instance(
                conn,
                row.instance_id,
                state=InstanceState.FAILED.value,
                desired=False,
                cause="agent lost",
                error_log=f"no heartbeat from cluster '{cluster.name}' for more than {timeout_s:g} s",
                updated_at=now,
                terminated_at=now,
            )
            versions.append(row.version_id)
    return versions


def to_instance_dto(row: InstanceRow, cluster: ClusterRow | None) -> InstanceDto:
    return InstanceDto(
        instance_id=row.instance_id,
        function_id=row.function_id,
        function_version_id=row.version_id,
        instance_type=row.instance_type,
        instance_status=_STATUS_OF[row.state],
        icms_request_id=row.instance_id,
        nca_id=row.nca_id,
        gpu=row.gpu,
        backend=cluster.group_name if cluster else None,
        location=cluster.name if cluster else None,
        instance_created_at=row.created_at,
        instance_updated_at=row.updated_at,
    )


async def _clusters_by_id(conn: Connection) -> dict[str, ClusterRow]:
    return {c.cluster_id: c for c in await clusters_repo.all_clusters(conn)}


async def active_instances(conn: Connection, version_id: str) -> list[InstanceDto]:
    clusters = await _clusters_by_id(conn)
    # a released instance takes no new work (its worker stops first) however long its process takes to
    # end (up to the stop grace): an undeployed version listed it RUNNING until then
    rows = [
        r for r in await instances_repo.of_version(conn, version_id) if r.desired and r.state in LIVE_STATES
    ]
    return [to_instance_dto(r, clusters.get(r.cluster_id)) for r in rows]


async def health_info(conn: Connection, deployment_id: str) -> list[DeploymentHealthDto]:
    """One entry per failed instance (its cause and error log), newest first; before them, one per
    starting instance whose agent says what it is doing (`detail`: an image pull's progress)."""
    clusters = await _clusters_by_id(conn)
    rows = await instances_repo.of_deployment(conn, deployment_id)
    starting = [r for r in rows if r.state == InstanceState.STARTING.value and r.detail]
    failed = [r for r in rows if r.state == "failed"]
    failed.sort(key=lambda r: r.updated_at, reverse=True)
    out = []
    for row in [*starting, *failed][:MAX_HEALTH_ENTRIES]:
        cluster = clusters.get(row.cluster_id)
        if row.state != "failed":
            error = row.detail or ""
        else:
            error = row.cause or "instance failed"
            if row.error_log:
                error = f"{error}: {row.error_log}"
        out.append(
            DeploymentHealthDto(
                icms_request_id=row.instance_id,
                gpu=row.gpu,
                backend=cluster.group_name if cluster else None,
                instance_type=row.instance_type,
                error=error,
            )
        )
    return out
