"""Deployments through the HTTP API (nvcf-api.md 1.2, 2.4, 2.5): validation, placement, codes, updates."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest
from functions_helpers import (
    INSTANCE_TYPE,
    assignments,
    create_function,
    deploy,
    register_cluster,
    report,
    spec,
)

from fnplane.control.app import ControlApp
from fnplane.control.db.repositories import deployments as deployments_repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.reconciler import reconcile_deployment
from fnplane.shared.scopes import DEPLOY_FUNCTION, LIST_FUNCTIONS
from polling import get_version


async def test_deploy_returns_200_and_places_min_instances(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    response = await deploy(admin_client, fn, spec(2, 3))
    assert response.status_code == 200, response.text
    deployment = response.json()["deployment"]
    assert deployment["functionId"] == fn["id"]
    assert deployment["functionVersionId"] == fn["versionId"]
    assert deployment["functionName"] == "echo"
    assert deployment["ncaId"] == "nvcf-default"
    assert deployment["functionStatus"] == "DEPLOYING"
    assert "healthInfo" not in deployment
    (gpu_spec,) = deployment["deploymentSpecifications"]
    assert gpu_spec["gpu"] == "L40S" and gpu_spec["instanceType"] == INSTANCE_TYPE
    assert gpu_spec["minInstances"] == 2 and gpu_spec["maxInstances"] == 3
    assert gpu_spec["maxRequestConcurrency"] == 1  # default
    assert gpu_spec["gpuSpecificationId"]
    assert deployment["createdAt"].endswith("Z") and deployment["lastUpdatedAt"].endswith("Z")
    placed = await assignments(admin_client)
    assert len(placed) == 2
    first = placed[0]
    assert first["desired"] is True and first["state"] == "requested"
    assert first["functionId"] == fn["id"] and first["functionVersionId"] == fn["versionId"]
    assert first["containerArgs"] == "python -m echo --port $(PORT)"
    assert first["health"]["timeoutSeconds"] == 10.0
    assert first["backend"] == "local" and first["gpu"] == "L40S"
    assert (await get_version(admin_client, fn))["status"] == "DEPLOYING"


async def test_deploy_with_min_zero_goes_straight_to_active(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    response = await deploy(admin_client, fn, spec(0, 2))
    assert response.json()["deployment"]["functionStatus"] == "ACTIVE"
    assert await assignments(admin_client) == []


async def test_get_deployment_by_version_and_by_id(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    assert (await admin_client.get(path)).status_code == 404
    created = (await deploy(admin_client, fn, spec(0, 1))).json()["deployment"]
    by_version = await admin_client.get(path)
    assert by_version.status_code == 200
    by_id = await admin_client.get(f"/v2/nvcf/deployments/{created['deploymentId']}")
    assert by_id.status_code == 200
    assert by_version.json() == by_id.json()
    assert (
        await admin_client.get("/v2/nvcf/deployments/00000000-0000-0000-0000-000000000000")
    ).status_code == 404


INVALID_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown gpu", {"gpu": "H100"}, "gpu"),
    ("unknown instance type", {"instanceType": "NCP.GPU.H100_1x"}, "instanceType"),
    ("unknown backend", {"backend": "aws"}, "backend"),
    ("backend and clusters", {"backend": "local", "clusters": ["local"]}, "clusters"),
    ("unknown cluster", {"clusters": ["elsewhere"]}, "clusters"),
    # with min 0 too: nothing places the spec then, and every call would wait out its window
    ("unknown region", {"regions": ["mars"], "minInstances": 0}, "regions"),
    ("min above max", {"minInstances": 3, "maxInstances": 2}, "minInstances"),
    ("negative min", {"minInstances": -1}, "minInstances"),
    ("max zero", {"minInstances": 0, "maxInstances": 0}, "maxInstances"),
    ("concurrency zero", {"maxRequestConcurrency": 0}, "maxRequestConcurrency"),
    ("concurrency too high", {"maxRequestConcurrency": 16385}, "maxRequestConcurrency"),
    # NVCF's DTOs hold Java ints: past 2^31 - 1 is a 400 (2^63 once reached SQLite and answered 500)
    ("max past a Java int", {"maxInstances": 2**31}, "maxInstances"),
    ("max past a 64-bit integer", {"maxInstances": 2**63}, "maxInstances"),
    ("min as a boolean", {"minInstances": True}, "minInstances"),
    (
        "scale-up threshold past a Java int",
        {"autoscalingConfiguration": {"scaleUpDetails": {"factor": 1.5, "threshold": 2**63}}},
        "autoscalingConfiguration.scaleUpDetails.threshold",
    ),
    ("missing gpu", {"gpu": None}, "gpu"),
    ("missing min", {"minInstances": None}, "minInstances"),
    ("helm configuration on a container function", {"configuration": {"a": 1}}, "configuration"),
    (
        "scale-up factor",
        {"autoscalingConfiguration": {"scaleUpDetails": {"factor": 0.9, "threshold": 70}}},
        "autoscalingConfiguration.scaleUpDetails.factor",
    ),
]


@pytest.mark.parametrize(("case", "override", "field"), INVALID_SPECS, ids=[c[0] for c in INVALID_SPECS])
async def test_deployment_validation(
    admin_client: httpx.AsyncClient, case: str, override: dict[str, Any], field: str
) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    body = spec(1, 2)
    for key, value in override.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    response = await deploy(admin_client, fn, body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    # the path from the body root, whether the model or the inventory check found it
    assert response.json()["field"] == f"deploymentSpecifications.0.{field}", response.text
    # nothing was created: the version is still INACTIVE, no instance was placed
    assert (await get_version(admin_client, fn))["status"] == "INACTIVE"
    assert await assignments(admin_client) == []


async def test_optional_spec_fields_sent_as_null_take_their_defaults(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    nulls = ("backend", "clusters", "regions", "attributes", "availabilityZones", "configuration")
    body = spec(0, 1, maxRequestConcurrency=None, preferredOrder=None, **dict.fromkeys(nulls))
    response = await deploy(admin_client, fn, body)
    assert response.status_code == 200, response.text  # maxRequestConcurrency null was a 400
    assert response.json()["deployment"]["deploymentSpecifications"][0]["maxRequestConcurrency"] == 1


async def test_at_most_64_specifications(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    response = await deploy(admin_client, fn, *[spec(0, 1)] * 65)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "deploymentSpecifications"
    assert "at most 64" in response.json()["detail"]
    assert (await get_version(admin_client, fn))["status"] == "INACTIVE"
    assert (await deploy(admin_client, fn, *[spec(0, 1)] * 64)).status_code == 200


async def test_deployment_case_insensitive_inventory_names(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client, group="Local-Group")
    fn = await create_function(admin_client)
    response = await deploy(
        admin_client, fn, spec(1, 1, gpu="l40s", instanceType=INSTANCE_TYPE.lower(), backend="local-group")
    )
    assert response.status_code == 200, response.text
    (gpu_spec,) = response.json()["deployment"]["deploymentSpecifications"]
    assert gpu_spec["gpu"] == "L40S"
    assert gpu_spec["instanceType"] == INSTANCE_TYPE
    assert gpu_spec["backend"] == "Local-Group"


async def test_deploy_without_any_cluster_is_400(admin_client: httpx.AsyncClient) -> None:
    fn = await create_function(admin_client)
    response = await deploy(admin_client, fn, spec(1, 1))
    assert response.status_code == 400
    assert "cluster" in response.json()["detail"]


async def test_capacity_exceeded_is_400_and_rolls_back(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(
        admin_client, capacity=2, instance_types=[(INSTANCE_TYPE, 1), ("LOCAL.GPU.L40S_2x", 2)]
    )
    fn = await create_function(admin_client)
    response = await deploy(admin_client, fn, spec(3, 3))
    assert response.status_code == 400
    assert response.json()["field"] == "deploymentSpecifications.0.minInstances"
    detail = response.json()["detail"]
    assert "no available clusters with capacity for L40S GPU or LOCAL.GPU.L40S_1x instance type" in detail
    assert (await get_version(admin_client, fn))["status"] == "INACTIVE"
    assert await assignments(admin_client) == []
    # two 1-GPU instances fit; then a 2-GPU instance of another function no longer does
    assert (await deploy(admin_client, fn, spec(2, 2))).status_code == 200
    other = await create_function(admin_client, name="other")
    refused = await deploy(admin_client, other, spec(1, 1, instanceType="LOCAL.GPU.L40S_2x"))
    assert refused.status_code == 400
    assert "LOCAL.GPU.L40S_2x" in refused.json()["detail"]


async def test_updates_admit_min_instances_as_a_deployment_does(admin_client: httpx.AsyncClient) -> None:
    """PATCH and the legacy PUT refuse a minInstances the clusters cannot hold, as POST does (400, nothing
    changed), and place the instances a raise adds at once."""
    await register_cluster(admin_client, capacity=2)
    fn = await create_function(admin_client)
    deployment = (await deploy(admin_client, fn, spec(1, 5))).json()["deployment"]
    spec_id = deployment["deploymentSpecifications"][0]["gpuSpecificationId"]
    patch_path = f"/v2/nvcf/deployments/{deployment['deploymentId']}/gpu-specifications/{spec_id}"
    put_path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    capacity = "no available clusters with capacity for L40S GPU or LOCAL.GPU.L40S_1x instance type"
    refused = await admin_client.patch(patch_path, json={"minInstances": 3})
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert capacity in refused.json()["detail"] and refused.json()["field"] == "minInstances"
    refused = await admin_client.put(put_path, json={"deploymentSpecifications": [spec(3, 5)]})
    assert refused.status_code == 400, refused.text
    assert capacity in refused.json()["detail"]
    assert refused.json()["field"] == "deploymentSpecifications.0.minInstances"
    (kept,) = (await admin_client.get(put_path)).json()["deployment"]["deploymentSpecifications"]
    assert (kept["minInstances"], kept["maxInstances"]) == (1, 5)
    assert len(await assignments(admin_client)) == 1
    # a raise that fits is placed by the update itself
    raised = await admin_client.patch(patch_path, json={"minInstances": 2})
    assert raised.status_code == 200, raised.text
    assert len([i for i in await assignments(admin_client) if i["desired"]]) == 2
    lowered = await admin_client.put(put_path, json={"deploymentSpecifications": [spec(1, 5)]})
    assert lowered.status_code == 200, lowered.text


async def test_placement_spreads_over_clusters(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client, "a", capacity=1)
    await register_cluster(admin_client, "b", capacity=1)
    fn = await create_function(admin_client)
    assert (await deploy(admin_client, fn, spec(2, 2))).status_code == 200
    assert len(await assignments(admin_client, "a")) == 1
    assert len(await assignments(admin_client, "b")) == 1
    pinned = await create_function(admin_client, name="pinned")
    refused = await deploy(admin_client, pinned, spec(1, 1, clusters=["a"]))
    assert refused.status_code == 400


async def test_deploy_only_from_inactive(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    assert (await deploy(admin_client, fn, spec(1, 1))).status_code == 200
    again = await deploy(admin_client, fn, spec(1, 1))
    assert again.status_code == 400
    assert "PATCH" in again.json()["detail"]


async def test_delete_deployment_returns_function_inactive(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    await deploy(admin_client, fn, spec(2, 2))
    for placed in await assignments(admin_client):
        await report(admin_client, placed["instanceId"], "running")
    assert len((await get_version(admin_client, fn))["activeInstances"]) == 2
    path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    response = await admin_client.delete(path, params={"graceful": "true"})
    assert response.status_code == 200
    assert response.json()["function"]["status"] == "INACTIVE"
    assert response.json()["function"]["versionId"] == fn["versionId"]
    # the instances are still listed for the agent, but no longer desired
    assert [i["desired"] for i in await assignments(admin_client)] == [False, False]
    # and no longer active, though their processes run until the agent has stopped them
    version = await get_version(admin_client, fn)
    assert version["status"] == "INACTIVE" and version["activeInstances"] == []
    assert (await admin_client.get(path)).status_code == 404
    assert (await admin_client.delete(path)).status_code == 404
    # a new deployment is allowed again
    assert (await deploy(admin_client, fn, spec(1, 1))).status_code == 200


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite has one writer anyway
async def test_an_undeploy_waits_for_a_reconcile_pass_that_holds_its_deployment(
    admin_client: httpx.AsyncClient, control_app: ControlApp
) -> None:
    """A pass that read the deployment, then the instances just after an undeploy's commit, placed a new
    instance for a deleted deployment (CI: an undeployed function never stopped): the pass locks the
    deployment's row, so the undeploy comes wholly before it or after it."""
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    created = (await deploy(admin_client, fn, spec(1, 1))).json()["deployment"]
    path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    components = control_app.components
    async with components.database.transaction() as conn:
        held = await deployments_repo.by_id(conn, created["deploymentId"], for_update=True)
        assert held is not None
        undeploy = asyncio.create_task(admin_client.delete(path))
        await asyncio.sleep(0.5)
        assert not undeploy.done(), "the undeploy went ahead of a pass holding its deployment"
        await reconcile_deployment(conn, held, components.settings, now_utc())
    assert (await undeploy).status_code == 200
    assert [i["desired"] for i in await assignments(admin_client)] == [False]


async def test_delete_version_removes_deployment_and_stops_instances(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    await deploy(admin_client, fn, spec(1, 1))
    response = await admin_client.delete(f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}")
    assert response.status_code == 204
    (instance,) = await assignments(admin_client)
    assert instance["desired"] is False
    assert (
        await admin_client.get(f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}")
    ).status_code == 404


async def test_patch_gpu_specification(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    deployment = (await deploy(admin_client, fn, spec(1, 2))).json()["deployment"]
    spec_id = deployment["deploymentSpecifications"][0]["gpuSpecificationId"]
    path = f"/v2/nvcf/deployments/{deployment['deploymentId']}/gpu-specifications/{spec_id}"
    response = await admin_client.patch(path, json={"maxInstances": 4})
    assert response.status_code == 200, response.text
    assert response.json()["gpuSpecification"]["maxInstances"] == 4
    assert response.json()["gpuSpecification"]["minInstances"] == 1
    autoscaling = {
        "scaleUpDetails": {
            "factor": 1.5,
            "threshold": 80,
            "stickiness": {"size": "PT10M", "threshold": "PT5M"},
        },
        "scaleDownDetails": {"factor": 0.5, "threshold": 20},
    }
    response = await admin_client.patch(path, json={"autoscalingConfiguration": autoscaling})
    assert response.json()["gpuSpecification"]["autoscalingConfiguration"] == autoscaling
    response = await admin_client.patch(
        path, json={"autoscalingConfigurationPolicy": "platform_configuration"}
    )
    assert "autoscalingConfiguration" not in response.json()["gpuSpecification"]
    # rules of 2.5
    assert (await admin_client.patch(path, json={})).status_code == 400
    assert (await admin_client.patch(path, json={"minInstances": 5})).status_code == 400  # > stored max 4
    assert (await admin_client.patch(path, json={"maxInstances": 0})).status_code == 400
    too_large = await admin_client.patch(path, json={"maxInstances": 2**63})
    assert too_large.status_code == 400 and too_large.json()["field"] == "maxInstances", too_large.text
    stickiness = {
        "scaleUpDetails": {"factor": 2, "threshold": 1, "stickiness": {"size": "PT2H", "threshold": "PT1M"}}
    }
    assert (await admin_client.patch(path, json={"autoscalingConfiguration": stickiness})).status_code == 400
    unknown = await admin_client.patch(
        f"/v2/nvcf/deployments/{deployment['deploymentId']}/gpu-specifications/nope", json={"maxInstances": 2}
    )
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "Unknown gpu-specification-id"


async def test_legacy_put_updates_min_max(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    await deploy(admin_client, fn, spec(0, 1))
    path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    body = {
        "deploymentSpecifications": [
            {
                "gpu": "L40S",
                "instanceType": INSTANCE_TYPE,
                "minInstances": 1,
                "maxInstances": 3,
                "maxRequestConcurrency": 4,
            }
        ]
    }
    response = await admin_client.put(path, json=body)
    assert response.status_code == 200, response.text
    (updated,) = response.json()["deployment"]["deploymentSpecifications"]
    assert (updated["minInstances"], updated["maxInstances"], updated["maxRequestConcurrency"]) == (1, 3, 4)
    body["deploymentSpecifications"].append(dict(body["deploymentSpecifications"][0]))
    assert (await admin_client.put(path, json=body)).status_code == 400


async def test_legacy_put_answers_the_new_last_updated_at(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    created = (await deploy(admin_client, fn, spec(0, 1))).json()["deployment"]
    path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    response = await admin_client.put(path, json={"deploymentSpecifications": [spec(0, 2)]})
    assert response.status_code == 200, response.text
    updated = response.json()["deployment"]
    assert datetime.fromisoformat(updated["lastUpdatedAt"]) > datetime.fromisoformat(created["lastUpdatedAt"])
    assert updated == (await admin_client.get(path)).json()["deployment"]


async def test_deployment_scopes_and_ownership(admin_client: httpx.AsyncClient, make_client: Any) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client)
    lister = await make_client([LIST_FUNCTIONS])
    assert (await deploy(lister, fn, spec(1, 1))).status_code == 403
    stranger = await make_client([DEPLOY_FUNCTION], nca_id="stranger")
    assert (await deploy(stranger, fn, spec(1, 1))).status_code == 404
    created = (await deploy(admin_client, fn, spec(0, 1))).json()["deployment"]
    assert (await stranger.get(f"/v2/nvcf/deployments/{created['deploymentId']}")).status_code == 404


async def test_shared_account_cannot_deploy(admin_client: httpx.AsyncClient, make_client: Any) -> None:
    await register_cluster(admin_client)
    other = await make_client(nca_id="sharer")
    fn = await create_function(other, name="theirs")
    await other.post(
        f"/v2/nvcf/authorizations/functions/{fn['id']}",
        json={"authorizedParties": [{"ncaId": "nvcf-default"}]},
    )
    assert (await deploy(admin_client, fn, spec(0, 1))).status_code == 404


async def test_a_health_port_other_than_the_inference_port_reaches_the_assignment(
    admin_client: httpx.AsyncClient,
) -> None:
    await register_cluster(admin_client)
    health = {"protocol": "HTTP", "uri": "/v2/health/ready", "port": 8000, "timeout": "PT5S"}
    fn = await create_function(admin_client, inferencePort=8001, health={**health, "expectedStatusCode": 200})
    assert (await deploy(admin_client, fn, spec(1, 1))).status_code == 200
    [placed] = await assignments(admin_client)
    assert placed["inferencePort"] == 8001
    assert placed["health"] == {
        "protocol": "HTTP",
        "uri": "/v2/health/ready",
        "port": 8000,
        "timeoutSeconds": 5.0,
        "expectedStatusCode": 200,
    }
