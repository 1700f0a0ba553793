"""Deployments: create (placing instances at once), get, update GPU specs, delete: `DeploymentService`.

Every change of what should run kicks the agents it concerns and wakes the reconciler.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fnplane.control.auth.principal import Principal
from fnplane.control.db.repositories import authorizations as parties_repo
from fnplane.control.db.repositories import clusters as clusters_repo
from fnplane.control.db.repositories import deployments as deployments_repo
from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.db.repositories import instances as instances_repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.deployments import DeploymentRecord, GpuSpecRecord
from fnplane.control.db.repositories.instances import InstanceRow
from fnplane.control.db.repositories.transactions import Connection, Database
from fnplane.control.services import functions as functions_service
from fnplane.control.services import instances as instances_service
from fnplane.control.services import placement
from fnplane.control.services.notify import ClusterNotifier, UndeployNotifier, WakeReconciler
from fnplane.control.services.visibility import SeenVersion, owned_version
from fnplane.control.settings import ControlSettings
from fnplane.shared.errors import BadRequestError, NotFoundError
from fnplane.shared.models.deployments import (
    MIN_MAX_RULE,
    AutoscalingConfigurationDto,
    AutoscalingPolicy,
    CreateDeploymentRequest,
    FunctionDeploymentDto,
    GpuSpecificationDto,
    LegacyUpdateDeploymentRequest,
    UpdateGpuSpecificationRequest,
)
from fnplane.shared.models.functions import BUSY_STATUSES, FunctionDto, FunctionStatus


def deployment_not_found(function_id: str, version_id: str) -> NotFoundError:
    return NotFoundError(f"Function '{function_id}' version '{version_id}' has no deployment")


def spec_dto(spec: GpuSpecRecord) -> GpuSpecificationDto:
    return GpuSpecificationDto(
        gpu_specification_id=spec.gpu_specification_id,
        gpu=spec.gpu,
        instance_type=spec.instance_type or "default",
        backend=spec.backend,
        min_instances=spec.min_instances,
        max_instances=spec.max_instances,
        max_request_concurrency=spec.max_request_concurrency,
        availability_zones=spec.availability_zones,
        clusters=spec.clusters,
        regions=spec.regions,
        attributes=spec.attributes,
        configuration=spec.configuration,
        autoscaling_configuration=(
            None
            if spec.autoscaling_configuration is None
            else AutoscalingConfigurationDto.model_validate(spec.autoscaling_configuration)
        ),
    )


async def _dto(conn: Connection, deployment: DeploymentRecord) -> FunctionDeploymentDto:
    version = await functions_repo.get_version(conn, deployment.version_id)
    assert version is not None
    health = await instances_service.health_info(conn, deployment.deployment_id)
    return FunctionDeploymentDto(
        function_id=deployment.function_id,
        function_version_id=deployment.version_id,
        deployment_id=deployment.deployment_id,
        function_name=version.name,
        nca_id=deployment.nca_id,
        function_status=FunctionStatus(version.status),
        health_info=health or None,
        deployment_specifications=[
            spec_dto(s) for s in await deployments_repo.specs_of(conn, deployment.deployment_id)
        ],
        created_at=deployment.created_at,
        last_updated_at=deployment.updated_at,
    )


def _check_status(seen: SeenVersion) -> None:
    v = seen.record
    if v.status == FunctionStatus.ERROR.value:
        raise BadRequestError(
            f"Function '{v.function_id}' version '{v.version_id}' already has a deployment with errors; "
            "delete the deployment first"
        )
    if v.status != FunctionStatus.INACTIVE.value:
        raise BadRequestError(
            f"Function '{v.function_id}' version '{v.version_id}' is {v.status}: a deployment can only be "
            "created for an INACTIVE version, use PATCH to update the existing deployment"
        )


async def _owned_deployment(
    conn: Connection, principal: Principal, deployment: DeploymentRecord
) -> SeenVersion:
    try:
        return await owned_version(conn, principal, deployment.function_id, deployment.version_id)
    except NotFoundError:
        raise NotFoundError(f"Deployment '{deployment.deployment_id}' not found") from None


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _require_busy(seen: SeenVersion) -> None:
    if seen.record.status not in BUSY_STATUSES:
        raise BadRequestError(
            f"Function '{seen.record.function_id}' version '{seen.record.version_id}' is "
            f"{seen.record.status}: "
            "only ACTIVE, DEPLOYING, DEGRADED or DEGRADING deployments can be updated"
        )


def _desired_live(rows: list[InstanceRow], spec: GpuSpecRecord) -> int:
    return sum(
        r.gpu_specification_id == spec.gpu_specification_id
        and r.desired
        and r.state in instances_repo.LIVE_STATES
        for r in rows
    )


class DeploymentService:
    def __init__(
        self,
        database: Database,
        settings: ControlSettings,
        notifier: ClusterNotifier,
        wake_reconciler: WakeReconciler,
        undeploys: UndeployNotifier,
    ) -> None:
        self._database = database
        # read at call time: agent_heartbeat_timeout_s decides which clusters take new instances
        self._settings = settings
        self._notifier = notifier
        self._undeploys = undeploys
        self._wake_reconciler = wake_reconciler

    async def _place_min(
        self,
        conn: Connection,
        deployment: DeploymentRecord,
        spec: GpuSpecRecord,
        count: int,
        now: datetime,
        *,
        field: str,
    ) -> list[str]:
        """Place `count` instances of the spec at once, or refuse (400 naming `field`, the transaction
        rolls back) when the clusters cannot hold them: how a new or raised `minInstances` is admitted.
        The clusters the instances went to."""
        rows = await placement.place(
            conn,
            deployment=deployment,
            spec=spec,
            count=count,
            now=now,
            heartbeat_timeout_s=self._settings.agent_heartbeat_timeout_s,
        )
        if len(rows) < count:
            raise placement.no_capacity(spec.gpu, spec.instance_type, field=field)
        return [r.cluster_id for r in rows]

    async def _admit_min(
        self,
        conn: Connection,
        deployment: DeploymentRecord,
        spec: GpuSpecRecord,
        min_instances: int,
        now: datetime,
        *,
        field: str,
    ) -> list[str]:
        """An update's `minInstances` (`spec` as it was): the instances a raise adds beyond the live
        ones are placed now, as for a new deployment. Replacing failed instances up to the old
        minimum stays the reconciler's (with its failure limits)."""
        live = _desired_live(await instances_repo.of_deployment(conn, deployment.deployment_id), spec)
        return await self._place_min(
            conn, deployment, spec, min_instances - max(spec.min_instances, live), now, field=field
        )

    async def create_deployment(
        self,
        principal: Principal,
        function_id: str,
        version_id: str,
        request: CreateDeploymentRequest,
    ) -> FunctionDeploymentDto:
        now = now_utc()
        async with self._database.transaction() as conn:
            seen = await owned_version(conn, principal, function_id, version_id)
            if await parties_repo.is_public(conn, function_id):
                raise BadRequestError(f"Function '{function_id}' is public and cannot be deployed")
            _check_status(seen)
            if await deployments_repo.by_version(conn, version_id) is not None:
                raise BadRequestError(
                    f"Function '{function_id}' version '{version_id}' still has a deployment being removed"
                )
            helm = bool(seen.record.helm_chart)
            clusters = await clusters_repo.all_clusters(conn, for_update=True)
            deployment = DeploymentRecord(
                str(uuid.uuid4()), function_id, version_id, seen.record.nca_id, now, now
            )
            await deployments_repo.insert_deployment(conn, deployment)
            placed: list[str] = []
            for index, spec in enumerate(request.deployment_specifications):
                if not helm and (spec.configuration is not None or spec.helm_validation_policy is not None):
                    field = "configuration" if spec.configuration is not None else "helmValidationPolicy"
                    raise BadRequestError(
                        f"Validation failed: field 'deploymentSpecifications.{index}.{field}': "
                        "only allowed for helm-chart functions",
                        field=f"deploymentSpecifications.{index}.{field}",
                        rule="helm functions only",
                    )
                resolved = placement.resolve(clusters, spec, at=f"deploymentSpecifications.{index}")
                record = GpuSpecRecord(
                    gpu_specification_id=str(uuid.uuid4()),
                    deployment_id=deployment.deployment_id,
                    gpu=resolved.gpu,
                    instance_type=resolved.instance_type,
                    backend=resolved.backend,
                    min_instances=spec.min_instances,
                    max_instances=spec.max_instances,
                    max_request_concurrency=spec.max_request_concurrency,
                    target_instances=spec.min_instances,
                    clusters=spec.clusters or None,
                    regions=spec.regions or None,
                    attributes=spec.attributes or None,
                    availability_zones=spec.availability_zones or None,
                    configuration=spec.configuration,
                    autoscaling_configuration=(
                        None
                        if spec.autoscaling_configuration is None
                        else spec.autoscaling_configuration.model_dump(
                            mode="json", by_alias=True, exclude_none=True
                        )
                    ),
                    preferred_order=spec.preferred_order,
                )
                await deployments_repo.insert_spec(conn, record)
                # refused: the transaction rolls back (no deployment, no instances, status unchanged)
                placed.extend(
                    await self._place_min(
                        conn,
                        deployment,
                        record,
                        record.min_instances,
                        now,
                        field=f"deploymentSpecifications.{index}.minInstances",
                    )
                )
            status = (
                FunctionStatus.DEPLOYING
                if any(s.min_instances > 0 for s in request.deployment_specifications)
                else FunctionStatus.ACTIVE
            )
            await functions_repo.set_status(conn, version_id, status.value, now)
            dto = await _dto(conn, deployment)
        await self._notifier.clusters(placed)
        self._wake_reconciler()
        return dto

    async def get_deployment(
        self, principal: Principal, function_id: str, version_id: str
    ) -> FunctionDeploymentDto:
        async with self._database.reading() as conn:
            await owned_version(conn, principal, function_id, version_id)
            deployment = await deployments_repo.by_version(conn, version_id)
            if deployment is None:
                raise deployment_not_found(function_id, version_id)
            return await _dto(conn, deployment)

    async def get_deployment_by_id(self, principal: Principal, deployment_id: str) -> FunctionDeploymentDto:
        async with self._database.reading() as conn:
            deployment = await deployments_repo.by_id(conn, deployment_id)
            if deployment is None:
                raise NotFoundError(f"Deployment '{deployment_id}' not found")
            await _owned_deployment(conn, principal, deployment)
            return await _dto(conn, deployment)

    async def update_gpu_specification(
        self,
        principal: Principal,
        deployment_id: str,
        gpu_specification_id: str,
        request: UpdateGpuSpecificationRequest,
    ) -> GpuSpecificationDto:
        if not request.has_update():
            raise BadRequestError(
                "Validation failed: at least one of minInstances, maxInstances, autoscalingConfiguration or "
                "autoscalingConfigurationPolicy is required",
                field="body",
                rule="at least one updatable field",
            )
        now = now_utc()
        async with self._database.transaction() as conn:
            deployment = await deployments_repo.by_id(conn, deployment_id)
            if deployment is None:
                raise NotFoundError(f"Deployment '{deployment_id}' not found")
            seen = await _owned_deployment(conn, principal, deployment)
            spec = await deployments_repo.spec_by_id(conn, gpu_specification_id)
            if spec is None or spec.deployment_id != deployment_id:
                raise NotFoundError("Unknown gpu-specification-id")
            _require_busy(seen)
            low = spec.min_instances if request.min_instances is None else request.min_instances
            high = spec.max_instances if request.max_instances is None else request.max_instances
            if low > high:
                raise BadRequestError(MIN_MAX_RULE, field="minInstances", rule="minInstances <= maxInstances")
            values: dict[str, Any] = {
                "min_instances": low,
                "max_instances": high,
                "target_instances": _clamp(spec.target_instances, low, high),
            }
            policy = request.autoscaling_configuration_policy or AutoscalingPolicy.CUSTOM_CONFIGURATION
            if policy == AutoscalingPolicy.PLATFORM_CONFIGURATION:
                values["autoscaling_configuration"] = None
            elif request.autoscaling_configuration is not None:
                values["autoscaling_configuration"] = request.autoscaling_configuration.model_dump(
                    mode="json", by_alias=True, exclude_none=True
                )
            await deployments_repo.update_spec(conn, gpu_specification_id, **values)
            placed = await self._admit_min(conn, deployment, spec, low, now, field="minInstances")
            await deployments_repo.touch(conn, deployment_id, now)
            updated = await deployments_repo.spec_by_id(conn, gpu_specification_id)
        assert updated is not None
        await self._notifier.clusters(placed)
        self._wake_reconciler()
        return spec_dto(updated)

    async def legacy_update_deployment(
        self,
        principal: Principal,
        function_id: str,
        version_id: str,
        request: LegacyUpdateDeploymentRequest,
    ) -> FunctionDeploymentDto:
        """The deprecated PUT: only min/max/maxRequestConcurrency change; backend/clusters must match."""
        now = now_utc()
        async with self._database.transaction() as conn:
            seen = await owned_version(conn, principal, function_id, version_id)
            deployment = await deployments_repo.by_version(conn, version_id)
            if deployment is None:
                raise deployment_not_found(function_id, version_id)
            _require_busy(seen)
            specs = await deployments_repo.specs_of(conn, deployment.deployment_id)
            updates = request.deployment_specifications
            if len(updates) != len(specs):
                raise BadRequestError(
                    "Validation failed: field 'deploymentSpecifications': "
                    f"expected {len(specs)} specifications, got {len(updates)}",
                    field="deploymentSpecifications",
                    rule=f"one entry per GPU specification of the deployment ({len(specs)})",
                )
            by_id = {s.gpu_specification_id: s for s in specs}
            placed: list[str] = []
            for index, update in enumerate(updates):
                if len(specs) == 1 and update.gpu_specification_id is None:
                    spec = specs[0]
                elif update.gpu_specification_id in by_id:
                    spec = by_id[update.gpu_specification_id]
                else:
                    raise BadRequestError(
                        f"Validation failed: field 'deploymentSpecifications.{index}.gpuSpecificationId': "
                        "must name a GPU specification of this deployment",
                        field=f"deploymentSpecifications.{index}.gpuSpecificationId",
                        rule="must name a GPU specification of this deployment",
                    )
                if (update.backend or None) and (spec.backend or "").lower() != update.backend.lower():
                    raise BadRequestError(
                        "backend cannot be changed",
                        field=f"deploymentSpecifications.{index}.backend",
                        rule="cannot be changed",
                    )
                if update.clusters and sorted(update.clusters) != sorted(spec.clusters or []):
                    raise BadRequestError(
                        "clusters cannot be changed",
                        field=f"deploymentSpecifications.{index}.clusters",
                        rule="cannot be changed",
                    )
                await deployments_repo.update_spec(
                    conn,
                    spec.gpu_specification_id,
                    min_instances=update.min_instances,
                    max_instances=update.max_instances,
                    target_instances=_clamp(
                        spec.target_instances, update.min_instances, update.max_instances
                    ),
                    max_request_concurrency=update.max_request_concurrency or spec.max_request_concurrency,
                )
                placed.extend(
                    await self._admit_min(
                        conn,
                        deployment,
                        spec,
                        update.min_instances,
                        now,
                        field=f"deploymentSpecifications.{index}.minInstances",
                    )
                )
            await deployments_repo.touch(conn, deployment.deployment_id, now)
            # as stored now: the answer's lastUpdatedAt is the update's, as a GET after it shows
            touched = await deployments_repo.by_id(conn, deployment.deployment_id)
            assert touched is not None
            dto = await _dto(conn, touched)
        await self._notifier.clusters(placed)
        self._wake_reconciler()
        return dto

    async def delete_deployment(
        self,
        principal: Principal,
        function_id: str,
        version_id: str,
        *,
        graceful: bool,
    ) -> FunctionDto:
        """Undeploy: the version is INACTIVE at once, its instances are stopped and the requests still
        queued for it are answered 404 by the gateways (UndeployNotifier).

        `graceful` is accepted for compatibility; both forms stop the instances now (agents stop a
        process with SIGTERM and a grace period, its worker finishing what it holds).
        """
        del graceful
        now = now_utc()
        async with self._database.transaction() as conn:
            seen = await owned_version(conn, principal, function_id, version_id)
            deployment = await deployments_repo.by_version(conn, version_id)
            if deployment is None:
                raise deployment_not_found(function_id, version_id)
            await deployments_repo.delete_deployment(conn, deployment.deployment_id)
            cluster_ids = await instances_repo.release_version(conn, version_id, now)
            await functions_repo.set_status(conn, version_id, FunctionStatus.INACTIVE.value, now)
            record = await functions_repo.get_version(conn, version_id)
        assert record is not None
        await self._notifier.clusters(cluster_ids)
        await self._undeploys.undeployed(function_id, version_id)
        return functions_service.to_dto(SeenVersion(record, owned=True, public=seen.public))

    async def set_target_instances(self, gpu_specification_id: str, n: int) -> int:
        """The autoscaler's lever: the spec's wanted instance count, clamped to [min, max]; returns it.

        The reconciler places or releases instances on its next pass (woken at once).
        """
        async with self._database.transaction() as conn:
            spec = await deployments_repo.spec_by_id(conn, gpu_specification_id)
            if spec is None:
                raise NotFoundError("Unknown gpu-specification-id")
            target = _clamp(n, spec.min_instances, spec.max_instances)
            if target != spec.target_instances:
                await deployments_repo.update_spec(conn, gpu_specification_id, target_instances=target)
        if target != spec.target_instances:
            self._wake_reconciler()
        return target
