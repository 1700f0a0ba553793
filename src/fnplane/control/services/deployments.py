"""Deployments: create (placing instances at once), get, update GPU specs, delete."""

from __future__ import annotations

import uuid
from typing import Any

from fnplane.control.auth.principal import Principal
from fnplane.control.db.repositories import authorizations as parties_repo
from fnplane.control.db.repositories import clusters as clusters_repo
from fnplane.control.db.repositories import deployments as deployments_repo
from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.db.repositories import instances as instances_repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.deployments import DeploymentRecord, GpuSpecRecord
from fnplane.control.db.repositories.transactions import Connection, Engine, reading, transaction
from fnplane.control.services import functions as functions_service
from fnplane.control.services import instances as instances_service
from fnplane.control.services import placement
from fnplane.control.services.notify import Notify, notify_clusters, wake_reconciler
from fnplane.control.services.visibility import SeenVersion, owned_version
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


async def create_deployment(
    engine: Engine,
    principal: Principal,
    function_id: str,
    version_id: str,
    request: CreateDeploymentRequest,
    *,
    heartbeat_timeout_s: float,
    notify: Notify | None = None,
) -> FunctionDeploymentDto:
    now = now_utc()
    async with transaction(engine) as conn:
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
                    f"Validation failed: field 'deploymentSpecifications[{index}].{field}': "
                    "only allowed for helm-chart functions",
                    field=f"deploymentSpecifications.{index}.{field}",
                    rule="helm functions only",
                )
            resolved = placement.resolve(clusters, spec)
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
            rows = await placement.place(
                conn,
                spec=record,
                function_id=function_id,
                version_id=version_id,
                nca_id=seen.record.nca_id,
                count=record.min_instances,
                now=now,
                heartbeat_timeout_s=heartbeat_timeout_s,
            )
            if len(rows) < record.min_instances:
                # the transaction rolls back: no deployment, no instances, status unchanged
                raise placement.no_capacity(record.gpu, record.instance_type)
            placed.extend(r.cluster_id for r in rows)
        status = (
            FunctionStatus.DEPLOYING
            if any(s.min_instances > 0 for s in request.deployment_specifications)
            else FunctionStatus.ACTIVE
        )
        await functions_repo.set_status(conn, version_id, status.value, now)
        dto = await _dto(conn, deployment)
    await notify_clusters(engine, notify, placed)
    return dto


async def _owned_deployment(
    conn: Connection, principal: Principal, deployment: DeploymentRecord
) -> SeenVersion:
    try:
        return await owned_version(conn, principal, deployment.function_id, deployment.version_id)
    except NotFoundError:
        raise NotFoundError(f"Deployment '{deployment.deployment_id}' not found") from None


async def get_deployment(
    engine: Engine, principal: Principal, function_id: str, version_id: str
) -> FunctionDeploymentDto:
    async with reading(engine) as conn:
        await owned_version(conn, principal, function_id, version_id)
        deployment = await deployments_repo.by_version(conn, version_id)
        if deployment is None:
            raise deployment_not_found(function_id, version_id)
        return await _dto(conn, deployment)


async def get_deployment_by_id(
    engine: Engine, principal: Principal, deployment_id: str
) -> FunctionDeploymentDto:
    async with reading(engine) as conn:
        deployment = await deployments_repo.by_id(conn, deployment_id)
        if deployment is None:
            raise NotFoundError(f"Deployment '{deployment_id}' not found")
        await _owned_deployment(conn, principal, deployment)
        return await _dto(conn, deployment)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _require_busy(seen: SeenVersion) -> None:
    if seen.record.status not in BUSY_STATUSES:
        raise BadRequestError(
            f"Function '{seen.record.function_id}' version '{seen.record.version_id}' is "
            f"{seen.record.status}: "
            "only ACTIVE, DEPLOYING, DEGRADED or DEGRADING deployments can be updated"
        )


async def update_gpu_specification(
    engine: Engine,
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
    async with transaction(engine) as conn:
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
        await deployments_repo.touch(conn, deployment_id, now)
        updated = await deployments_repo.spec_by_id(conn, gpu_specification_id)
    assert updated is not None
    wake_reconciler(engine)
    return spec_dto(updated)


async def legacy_update_deployment(
    engine: Engine,
    principal: Principal,
    function_id: str,
    version_id: str,
    request: LegacyUpdateDeploymentRequest,
) -> FunctionDeploymentDto:
    """The deprecated PUT: only min/max/maxRequestConcurrency change; backend/clusters must match."""
    now = now_utc()
    async with transaction(engine) as conn:
        seen = await owned_version(conn, principal, function_id, version_id)
        deployment = await deployments_repo.by_version(conn, version_id)
        if deployment is None:
            raise deployment_not_found(function_id, version_id)
        _require_busy(seen)
        specs = await deployments_repo.specs_of(conn, deployment.deployment_id)
        updates = request.deployment_specifications
        if len(updates) != len(specs):
            raise BadRequestError(
                f"Validation failed: field 'deploymentSpecifications': expected {len(specs)} specifications, "
                f"got {len(updates)}",
                field="deploymentSpecifications",
            )
        by_id = {s.gpu_specification_id: s for s in specs}
        for index, update in enumerate(updates):
            if len(specs) == 1 and update.gpu_specification_id is None:
                spec = specs[0]
            elif update.gpu_specification_id in by_id:
                spec = by_id[update.gpu_specification_id]
            else:
                raise BadRequestError(
                    f"Validation failed: field 'deploymentSpecifications[{index}].gpuSpecificationId': "
                    "must name a GPU specification of this deployment",
                    field=f"deploymentSpecifications.{index}.gpuSpecificationId",
                )
            if (update.backend or None) and (spec.backend or "").lower() != update.backend.lower():
                raise BadRequestError(
                    "backend cannot be changed", field=f"deploymentSpecifications.{index}.backend"
                )
            if update.clusters and sorted(update.clusters) != sorted(spec.clusters or []):
                raise BadRequestError(
                    "clusters cannot be changed", field=f"deploymentSpecifications.{index}.clusters"
                )
            await deployments_repo.update_spec(
                conn,
                spec.gpu_specification_id,
                min_instances=update.min_instances,
                max_instances=update.max_instances,
                target_instances=_clamp(spec.target_instances, update.min_instances, update.max_instances),
                max_request_concurrency=update.max_request_concurrency or spec.max_request_concurrency,
            )
        await deployments_repo.touch(conn, deployment.deployment_id, now)
        dto = await _dto(conn, deployment)
    wake_reconciler(engine)
    return dto


async def delete_deployment(
    engine: Engine,
    principal: Principal,
    function_id: str,
    version_id: str,
    *,
    graceful: bool,
    notify: Notify | None = None,
) -> FunctionDto:
    """Undeploy: the version is INACTIVE at once and its instances are stopped.

    `graceful` is accepted for compatibility; the invocation plane's queue is not the control plane's
    to drain, so both forms stop the instances now (agents stop a process with SIGTERM and a grace period).
    """
    del graceful
    now = now_utc()
    async with transaction(engine) as conn:
        seen = await owned_version(conn, principal, function_id, version_id)
        deployment = await deployments_repo.by_version(conn, version_id)
        if deployment is None:
            raise deployment_not_found(function_id, version_id)
        await deployments_repo.delete_deployment(conn, deployment.deployment_id)
        cluster_ids = await instances_repo.release_version(conn, version_id, now)
        await functions_repo.set_status(conn, version_id, FunctionStatus.INACTIVE.value, now)
        record = await functions_repo.get_version(conn, version_id)
    assert record is not None
    await notify_clusters(engine, notify, cluster_ids)
    return functions_service.to_dto(SeenVersion(record, owned=True, public=seen.public))


async def set_target_instances(engine: Engine, gpu_specification_id: str, n: int) -> int:
    """The autoscaler's lever: the spec's wanted instance count, clamped to [min, max]; returns it.

    The reconciler places or releases instances on its next pass (woken at once).
    """
    async with transaction(engine) as conn:
        spec = await deployments_repo.spec_by_id(conn, gpu_specification_id)
        if spec is None:
            raise NotFoundError("Unknown gpu-specification-id")
        target = _clamp(n, spec.min_instances, spec.max_instances)
        if target != spec.target_instances:
            await deployments_repo.update_spec(conn, gpu_specification_id, target_instances=target)
    if target != spec.target_instances:
        wake_reconciler(engine)
    return target
