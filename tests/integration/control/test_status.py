"""The function-status machine driven through the agent API, as the compute plane drives it.

The reconciler runs for real (short period); each transition of compute.md 1.1 / nvcf-api.md 3.1 is
reached by registering a cluster, deploying and reporting instance states over HTTP.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from functions_helpers import (
    assignments,
    create_function,
    deploy,
    reconciler,  # noqa: F401 - fixture
    register_cluster,
    report,
    spec,
    wait_for,
    wait_live,
    wait_status,
)

from fnplane.control.settings import ControlSettings
from fnplane.shared.scopes import LIST_FUNCTIONS
from polling import get_version

pytestmark = pytest.mark.usefixtures("reconciler")


@pytest.fixture
def control_settings(database_url: str) -> ControlSettings:
    return ControlSettings(
        database_url=database_url,
        key_hash_secret="test-key-hash-secret",
        reconcile_interval_s=0.2,
        agent_heartbeat_timeout_s=30.0,
        instance_failure_limit=3,
    )


async def _deployed(client: httpx.AsyncClient, min_instances: int, max_instances: int | None = None) -> dict:
    await register_cluster(client)
    fn = await create_function(client)
    response = await deploy(client, fn, spec(min_instances, max_instances or max(min_instances, 1)))
    assert response.status_code == 200, response.text
    return fn


async def test_deploying_to_active_when_min_instances_run(admin_client: httpx.AsyncClient) -> None:
    fn = await _deployed(admin_client, 2)
    first, second = await wait_live(admin_client, 2)
    await report(admin_client, first["instanceId"], "starting")
    await report(admin_client, first["instanceId"], "running")
    await report(admin_client, second["instanceId"], "starting")
    await wait_status(admin_client, fn, "DEPLOYING")
    await report(admin_client, second["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")
    detail = await get_version(admin_client, fn)
    states = {i["instanceId"]: i["instanceStatus"] for i in detail["activeInstances"]}
    assert states == {first["instanceId"]: "RUNNING", second["instanceId"]: "RUNNING"}
    instance = detail["activeInstances"][0]
    assert instance["gpu"] == "L40S" and instance["backend"] == "local" and instance["location"] == "local"
    assert instance["instanceCreatedAt"].endswith("Z") and instance["instanceUpdatedAt"].endswith("Z")


async def test_a_starting_instance_says_what_it_does_in_healthinfo_until_it_runs(
    admin_client: httpx.AsyncClient,
) -> None:
    fn = await _deployed(admin_client, 2)
    first, second = await wait_live(admin_client, 2)
    path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"

    async def health() -> list[dict[str, Any]]:
        return list((await admin_client.get(path)).json()["deployment"].get("healthInfo") or [])

    pulling = "pulling image nvcr.io/acme/model:1: 2 of 5 layers, 1.0 of 80.0 MB"
    await report(admin_client, first["instanceId"], "starting", detail=pulling)
    await report(admin_client, second["instanceId"], "starting")
    [entry] = await health()
    assert entry["icmsRequestId"] == first["instanceId"] and entry["error"] == pulling
    assert entry["instanceType"] == "LOCAL.GPU.L40S_1x" and entry["gpu"] == "L40S"
    # the newest word replaces the last; an oversized one is cut to a line's worth
    await report(admin_client, first["instanceId"], "starting", detail="x" * 5000)
    assert [len(e["error"]) for e in await health()] == [512]
    # a report without a detail says the start is over
    await report(admin_client, first["instanceId"], "starting")
    assert await health() == []
    await report(admin_client, second["instanceId"], "running", detail="ignored once running")
    assert await health() == []
    await report(admin_client, first["instanceId"], "starting", detail=pulling)
    await report(admin_client, first["instanceId"], "failed", cause="image-pull-issues", errorLog="denied")
    assert [e["error"] for e in await health()] == ["image-pull-issues: denied"]


async def test_deploying_to_error_when_every_instance_fails(admin_client: httpx.AsyncClient) -> None:
    fn = await _deployed(admin_client, 2)
    first, second = await wait_live(admin_client, 2)
    await report(
        admin_client, first["instanceId"], "failed", cause="container-restart-loop", errorLog="boom 1"
    )
    # the first batch is let finish: no replacement while no instance of the spec ever ran
    await wait_status(admin_client, fn, "DEPLOYING")
    assert len(await assignments(admin_client)) == 1
    await report(
        admin_client, second["instanceId"], "failed", cause="degraded-worker", errorLog="ImportError: x"
    )
    await wait_status(admin_client, fn, "ERROR")
    deployment = (
        await admin_client.get(f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}")
    ).json()["deployment"]
    assert deployment["functionStatus"] == "ERROR"
    errors = {h["icmsRequestId"]: h for h in deployment["healthInfo"]}
    assert errors[second["instanceId"]]["error"] == "degraded-worker: ImportError: x"
    assert errors[first["instanceId"]]["gpu"] == "L40S"
    assert errors[first["instanceId"]]["instanceType"] == "LOCAL.GPU.L40S_1x"
    assert errors[first["instanceId"]]["backend"] == "local"
    # ERROR is sticky: nothing is replaced, a new deployment is refused until DELETE
    assert await assignments(admin_client) == []
    again = await deploy(admin_client, fn, spec(1, 1))
    assert again.status_code == 400
    assert "already has a deployment with errors" in again.json()["detail"]
    deleted = await admin_client.delete(
        f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    )
    assert deleted.status_code == 200 and deleted.json()["function"]["status"] == "INACTIVE"
    assert (await deploy(admin_client, fn, spec(1, 1))).status_code == 200


async def test_failed_instance_is_replaced_active_degrading_active(
    admin_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fnplane.control.reconciler")
    fn = await _deployed(admin_client, 1)
    (first,) = await wait_live(admin_client, 1)
    await report(admin_client, first["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")
    await report(admin_client, first["instanceId"], "failed", cause="container-restart-loop", errorLog="oops")
    # a replacement is requested at once; while it starts the version is DEGRADING
    (replacement,) = await wait_live(admin_client, 1)
    assert replacement["instanceId"] != first["instanceId"]
    await wait_status(admin_client, fn, "DEGRADING")
    await report(admin_client, replacement["instanceId"], "starting")
    await report(admin_client, replacement["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")
    # never DEGRADED (which refuses requests) on the way: the replacement was placed in the same pass
    assert "ACTIVE -> DEGRADING" in caplog.text and "-> DEGRADED" not in caplog.text


async def test_crash_loop_stops_replacements_and_degrades(admin_client: httpx.AsyncClient) -> None:
    fn = await _deployed(admin_client, 1)
    (instance,) = await wait_live(admin_client, 1)
    await report(admin_client, instance["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")
    for _ in range(3):  # instance_failure_limit
        await report(admin_client, instance["instanceId"], "failed", cause="container-restart-loop")
        if _ < 2:
            (instance,) = await wait_live(admin_client, 1)
    await wait_status(admin_client, fn, "DEGRADED")
    assert await wait_live(admin_client, 0) == []


async def test_agent_lost_degraded_then_recovers(admin_client: httpx.AsyncClient, control_app: Any) -> None:
    fn = await _deployed(admin_client, 1)
    (instance,) = await wait_live(admin_client, 1)
    await report(admin_client, instance["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")
    # the agent stops sending heartbeats: after the timeout its instances are failed ("agent lost")
    control_app.components.settings.agent_heartbeat_timeout_s = 0.5
    await wait_status(admin_client, fn, "DEGRADED", timeout_s=3.0)
    deployment = (
        await admin_client.get(f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}")
    ).json()["deployment"]
    assert deployment["healthInfo"][0]["error"].startswith("agent lost")
    # no replacement goes to a silent cluster
    assert await wait_live(admin_client, 0) == []
    # the agent comes back: a replacement is placed, DEGRADING while it starts, ACTIVE when it runs
    control_app.components.settings.agent_heartbeat_timeout_s = 30.0
    await register_cluster(admin_client)
    (replacement,) = await wait_live(admin_client, 1)
    await report(admin_client, replacement["instanceId"], "starting")
    await wait_status(admin_client, fn, "DEGRADING")
    await report(admin_client, replacement["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")


async def test_min_zero_stays_active_without_instances(
    admin_client: httpx.AsyncClient, control_app: Any
) -> None:
    fn = await _deployed(admin_client, 0, 2)
    await wait_status(admin_client, fn, "ACTIVE")
    deployment = (
        await admin_client.get(f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}")
    ).json()["deployment"]
    spec_id = deployment["deploymentSpecifications"][0]["gpuSpecificationId"]
    # the autoscaler's lever: up to 2 (clamped to max), then back to zero
    assert await control_app.components.deployments.set_target_instances(spec_id, 5) == 2
    instances = await wait_live(admin_client, 2)
    for instance in instances:
        await report(admin_client, instance["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")
    assert await control_app.components.deployments.set_target_instances(spec_id, -3) == 0
    await wait_live(admin_client, 0)
    for instance in instances:
        await report(admin_client, instance["instanceId"], "terminated")
    await wait_for(lambda: _assignment_count(admin_client, 0))
    await wait_status(admin_client, fn, "ACTIVE")


async def _assignment_count(client: httpx.AsyncClient, n: int) -> bool:
    return len(await assignments(client)) == n


async def test_scale_down_releases_not_started_first(
    admin_client: httpx.AsyncClient, control_app: Any
) -> None:
    fn = await _deployed(admin_client, 1, 3)
    (running,) = await wait_live(admin_client, 1)
    await report(admin_client, running["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")
    deployment = (
        await admin_client.get(f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}")
    ).json()["deployment"]
    spec_id = deployment["deploymentSpecifications"][0]["gpuSpecificationId"]
    await control_app.components.deployments.set_target_instances(spec_id, 3)
    await wait_live(admin_client, 3)
    await control_app.components.deployments.set_target_instances(spec_id, 1)
    (kept,) = await wait_live(admin_client, 1)
    assert kept["instanceId"] == running["instanceId"]


async def test_undeploy_releases_and_terminated_reports_clear_assignments(
    admin_client: httpx.AsyncClient,
) -> None:
    fn = await _deployed(admin_client, 1)
    (instance,) = await wait_live(admin_client, 1)
    await report(admin_client, instance["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")
    response = await admin_client.delete(
        f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    )
    assert response.json()["function"]["status"] == "INACTIVE"
    (listed,) = await assignments(admin_client)
    assert listed["desired"] is False
    await report(admin_client, instance["instanceId"], "terminated")
    assert await assignments(admin_client) == []
    # final states are final: a late "running" report changes nothing
    await report(admin_client, instance["instanceId"], "running")
    assert await assignments(admin_client) == []
    assert (await get_version(admin_client, fn))["status"] == "INACTIVE"


async def test_patch_min_above_running_degrades_then_recovers(admin_client: httpx.AsyncClient) -> None:
    fn = await _deployed(admin_client, 1, 2)
    (instance,) = await wait_live(admin_client, 1)
    await report(admin_client, instance["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")
    deployment = (
        await admin_client.get(f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}")
    ).json()["deployment"]
    spec_id = deployment["deploymentSpecifications"][0]["gpuSpecificationId"]
    patched = await admin_client.patch(
        f"/v2/nvcf/deployments/{deployment['deploymentId']}/gpu-specifications/{spec_id}",
        json={"minInstances": 2},
    )
    assert patched.status_code == 200
    added = [i for i in await wait_live(admin_client, 2) if i["instanceId"] != instance["instanceId"]]
    await wait_status(admin_client, fn, "DEGRADING")
    await report(admin_client, added[0]["instanceId"], "running")
    await wait_status(admin_client, fn, "ACTIVE")


async def test_agent_api_contract(admin_client: httpx.AsyncClient, make_client: Any) -> None:
    record = await register_cluster(admin_client, "edge-1", group="edge")
    assert record["name"] == "edge-1" and record["group"] == "edge" and record["clusterId"]
    assert record["inventory"][0]["instanceTypes"][0]["gpuCount"] == 1
    again = await register_cluster(admin_client, "edge-1", group="edge", capacity=4)
    assert again["clusterId"] == record["clusterId"] and again["inventory"][0]["capacity"] == 4
    assert (await admin_client.get("/v1/fnplane/clusters/unknown/instances")).status_code == 404
    unknown = await admin_client.post("/v1/fnplane/instances/nope/reports", json={"state": "running"})
    assert unknown.status_code == 404
    bad_state = await admin_client.post("/v1/fnplane/instances/nope/reports", json={"state": "exploded"})
    assert bad_state.status_code == 400
    metrics = {"intervalSeconds": 5, "versions": []}
    assert (await admin_client.post("/v1/fnplane/clusters/edge-1/metrics", json=metrics)).status_code == 204
    # agents need the cluster-management scope
    user = await make_client([LIST_FUNCTIONS])
    assert (await user.get("/v1/fnplane/clusters/edge-1/instances")).status_code == 403
    body = {"agentId": "x", "group": "g", "inventory": []}
    assert (await user.put("/v1/fnplane/clusters/edge-2", json=body)).status_code == 403
    http_anon = httpx.AsyncClient(transport=admin_client._transport, base_url="http://testserver")
    async with http_anon:
        assert (await http_anon.get("/v1/fnplane/clusters/edge-1/instances")).status_code == 401


async def test_instance_environment_includes_secrets(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(
        admin_client,
        containerEnvironment=[{"key": "MODE", "value": "fast"}],
        secrets=[{"name": "TOKEN", "value": "t0k"}],
    )
    await deploy(admin_client, fn, spec(1, 1, maxRequestConcurrency=8))
    (instance,) = await wait_live(admin_client, 1)
    assert instance["containerEnvironment"] == {"MODE": "fast", "TOKEN": "t0k"}
    assert instance["maxRequestConcurrency"] == 8
    assert instance["functionName"] == "echo" and instance["ncaId"] == "nvcf-default"
