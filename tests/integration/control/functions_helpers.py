"""Test drivers for the function/deployment tests: request bodies, an agent speaking the agent API, waits.

The "agent" here is the test itself calling the real HTTP contract of shared.models.compute, so the
status machine is driven exactly as the compute plane drives it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import polling

GPU = "L40S"
INSTANCE_TYPE = "LOCAL.GPU.L40S_1x"


def function_body(name: str = "echo", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "containerImage": "nvcr.io/example/echo:1.0",
        "containerArgs": "python -m echo --port $(PORT)",
    }
    body.update(extra)
    return body


def spec(min_instances: int = 1, max_instances: int = 2, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "gpu": GPU,
        "instanceType": INSTANCE_TYPE,
        "minInstances": min_instances,
        "maxInstances": max_instances,
    }
    body.update(extra)
    return body


def inventory(
    capacity: int = 8, gpu: str = GPU, instance_types: list[tuple[str, int]] | None = None
) -> list[dict]:
    types = instance_types or [(INSTANCE_TYPE, 1)]
    return [
        {
            "gpu": gpu,
            "capacity": capacity,
            "instanceTypes": [
                {"name": name, "description": f"{gpu} x{count}", "default": i == 0, "gpuCount": count}
                for i, (name, count) in enumerate(types)
            ],
        }
    ]


async def register_cluster(
    client: httpx.AsyncClient, name: str = "local", *, group: str = "local", capacity: int = 8, **kw: Any
) -> dict[str, Any]:
    body = {
        "agentId": f"agent-{name}",
        "group": group,
        "region": "local",
        "inventory": inventory(capacity, **kw),
    }
    response = await client.put(f"/v1/fnplane/clusters/{name}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def create_function(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await client.post("/v2/nvcf/functions", json=function_body(**extra))
    assert response.status_code == 200, response.text
    return response.json()["function"]


async def deploy(client: httpx.AsyncClient, fn: dict[str, Any], *specs: dict[str, Any]) -> httpx.Response:
    return await client.post(
        f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}",
        json={"deploymentSpecifications": list(specs) or [spec()]},
    )


async def assignments(client: httpx.AsyncClient, cluster: str = "local") -> list[dict[str, Any]]:
    response = await client.get(f"/v1/fnplane/clusters/{cluster}/instances")
    assert response.status_code == 200, response.text
    return response.json()["instances"]


async def report(client: httpx.AsyncClient, instance_id: str, state: str, **extra: Any) -> None:
    response = await client.post(
        f"/v1/fnplane/instances/{instance_id}/reports", json={"state": state, **extra}
    )
    assert response.status_code == 204, response.text


async def wait_for(predicate: Any, timeout_s: float = 3.0, interval_s: float = 0.05) -> Any:
    return await polling.wait_for(predicate, timeout_s, interval_s)


async def wait_status(
    client: httpx.AsyncClient, fn: dict[str, Any], status: str, timeout_s: float = 2.0
) -> dict[str, Any]:
    return await polling.wait_status(client, fn, status, timeout_s)


async def wait_live(client: httpx.AsyncClient, count: int, cluster: str = "local") -> list[dict[str, Any]]:
    """Wait until the cluster has exactly `count` desired instances, and return them."""

    async def check() -> list[dict[str, Any]] | None:
        desired = [i for i in await assignments(client, cluster) if i["desired"]]
        return desired if len(desired) == count else None

    if count == 0:
        await wait_for(lambda: _none_desired(client, cluster))
        return []
    return await wait_for(check)


async def _none_desired(client: httpx.AsyncClient, cluster: str) -> bool:
    return not [i for i in await assignments(client, cluster) if i["desired"]]


@pytest.fixture
async def reconciler(control_app: Any) -> AsyncIterator[Any]:
    """The app's reconciler, running (the ASGI test transport does not run the lifespan), with the
    control lease it runs under (on PostgreSQL an advisory lock: only its holder reconciles)."""
    reconciler = control_app.components.reconciler
    lease = control_app.components.lease
    await lease.start()
    await reconciler.start()
    try:
        yield reconciler
    finally:
        await reconciler.aclose()
        await lease.aclose()
