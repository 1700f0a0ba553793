"""`GET /v2/nvcf/clusterGroups` and `GET /v2/nvcf/supportedGpus` from the registered inventory (1.11)."""

from __future__ import annotations

from typing import Any

import httpx
from functions_helpers import INSTANCE_TYPE, register_cluster

from fnplane.shared.models.compute import ClusterRegistration
from fnplane.shared.scopes import LIST_CLUSTER_GROUPS, LIST_FUNCTIONS, REGISTER_FUNCTION


async def test_cluster_groups_shape(admin_client: httpx.AsyncClient) -> None:
    assert (await admin_client.get("/v2/nvcf/clusterGroups")).json() == {"clusterGroups": []}
    a = await register_cluster(admin_client, "node-a", group="local")
    b = await register_cluster(
        admin_client, "node-b", group="local", instance_types=[(INSTANCE_TYPE, 1), ("LOCAL.GPU.L40S_2x", 2)]
    )
    await register_cluster(admin_client, "gpu-box", group="lab", gpu="H100")
    response = await admin_client.get("/v2/nvcf/clusterGroups")
    assert response.status_code == 200
    groups = {g["name"]: g for g in response.json()["clusterGroups"]}
    assert set(groups) == {"lab", "local"}
    local = groups["local"]
    assert local["ncaId"] == "nvcf-default"
    assert local["authorizedNcaIds"] == ["*"]
    assert local["id"] and local["id"] != groups["lab"]["id"]
    assert {c["id"] for c in local["clusters"]} == {a["clusterId"], b["clusterId"]}
    assert {c["name"] for c in local["clusters"]} == {"node-a", "node-b"}
    (gpu,) = local["gpus"]
    assert gpu["name"] == "L40S"
    types = {t["name"]: t for t in gpu["instanceTypes"]}
    assert set(types) == {INSTANCE_TYPE, "LOCAL.GPU.L40S_2x"}
    assert types[INSTANCE_TYPE] == {"name": INSTANCE_TYPE, "description": "L40S x1", "default": True}
    # the group id is stable
    again = (await admin_client.get("/v2/nvcf/clusterGroups")).json()["clusterGroups"]
    assert {g["name"]: g["id"] for g in again} == {name: g["id"] for name, g in groups.items()}


async def test_supported_gpus(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client, "node-a", group="local")
    await register_cluster(admin_client, "gpu-box", group="lab", gpu="H100")
    response = await admin_client.get("/v2/nvcf/supportedGpus")
    assert response.status_code == 200
    assert response.json() == [{"gpu": "H100", "backend": "lab"}, {"gpu": "L40S", "backend": "local"}]


async def test_scopes(make_client: Any, http: httpx.AsyncClient) -> None:
    assert (await http.get("/v2/nvcf/clusterGroups")).status_code == 401
    assert (await http.get("/v2/nvcf/supportedGpus")).status_code == 401
    lister = await make_client([LIST_FUNCTIONS])
    assert (await lister.get("/v2/nvcf/clusterGroups")).status_code == 403
    assert (await lister.get("/v2/nvcf/supportedGpus")).status_code == 403
    # API keys with the scope are accepted (NVCF: JWT only), and JWTs too
    assert (await (await make_client([LIST_CLUSTER_GROUPS])).get("/v2/nvcf/clusterGroups")).status_code == 200
    jwt = await make_client([LIST_CLUSTER_GROUPS, REGISTER_FUNCTION], kind="jwt")
    assert (await jwt.get("/v2/nvcf/clusterGroups")).status_code == 200
    assert (await jwt.get("/v2/nvcf/supportedGpus")).status_code == 200


async def test_register_cluster_service_seeds_the_local_cluster(
    admin_client: httpx.AsyncClient, control_app: Any
) -> None:
    """What `fnplane up` does: the default fake L40S pool, registered without HTTP."""
    registration = ClusterRegistration.model_validate(
        {
            "agentId": "local-agent",
            "group": "local",
            "inventory": [
                {"gpu": "L40S", "capacity": 8, "instanceTypes": [{"name": INSTANCE_TYPE, "default": True}]}
            ],
        }
    )
    record = await control_app.components.clusters.register_cluster("local", registration)
    assert record.name == "local" and record.inventory[0].capacity == 8
    assert (await admin_client.get("/v2/nvcf/supportedGpus")).json() == [{"gpu": "L40S", "backend": "local"}]


async def test_registration_validation(admin_client: httpx.AsyncClient) -> None:
    duplicate_gpu = {
        "agentId": "x",
        "group": "g",
        "inventory": [
            {"gpu": "L40S", "capacity": 1, "instanceTypes": [{"name": "a"}]},
            {"gpu": "l40s", "capacity": 1, "instanceTypes": [{"name": "b"}]},
        ],
    }
    assert (await admin_client.put("/v1/fnplane/clusters/c", json=duplicate_gpu)).status_code == 400
    no_types = {
        "agentId": "x",
        "group": "g",
        "inventory": [{"gpu": "L40S", "capacity": 1, "instanceTypes": []}],
    }
    assert (await admin_client.put("/v1/fnplane/clusters/c", json=no_types)).status_code == 400
    negative = {
        "agentId": "x",
        "group": "g",
        "inventory": [{"gpu": "L40S", "capacity": -1, "instanceTypes": []}],
    }
    assert (await admin_client.put("/v1/fnplane/clusters/c", json=negative)).status_code == 400
