"""The instance-assignment factory the compute tests share (unit and integration)."""

from __future__ import annotations

import uuid

from fnplane.shared.models.compute import HealthCheck, InstanceAssignment, InstanceState


def make_assignment(
    container_args: str | None, *, protocol: str = "HTTP", **overrides: object
) -> InstanceAssignment:
    """An instance of a fresh function version, ready to start: the echo function's health, port and
    URL unless overridden (camelCase field names)."""
    fields: dict[str, object] = {
        "instanceId": str(uuid.uuid4()),
        "functionId": str(uuid.uuid4()),
        "functionVersionId": str(uuid.uuid4()),
        "functionName": "echo",
        "ncaId": "nvcf-default",
        "desired": True,
        "state": InstanceState.REQUESTED,
        "gpu": "L40S",
        "instanceType": "LOCAL.GPU.L40S_1x",
        "backend": "local",
        "region": "local",
        "containerArgs": container_args,
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "health": HealthCheck(
            protocol=protocol, uri="/v2/health/ready", port=8000, timeoutSeconds=2.0, expectedStatusCode=200
        ),
        "maxRequestConcurrency": 2,
    }
    fields.update(overrides)
    return InstanceAssignment.model_validate(fields)
