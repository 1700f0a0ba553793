"""`/v2/nvcf/accounts`: super-admin account CRUD (scope `account_setup`) and its validation rules."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from functions_helpers import create_function

from fnplane.shared.scopes import ACCOUNT_SETUP, LIST_FUNCTIONS


async def test_accounts_crud(admin_client: httpx.AsyncClient) -> None:
    created = await admin_client.post(
        "/v2/nvcf/accounts/team-a",
        json={"name": "Team-A", "adminClientId": "team-a-admin", "maxFunctionsAllowed": 5},
    )
    assert created.status_code == 200, created.text
    account = created.json()["account"]
    assert account["ncaId"] == "team-a"
    assert account["adminClientIds"] == ["team-a-admin"]
    assert account["maxFunctionsAllowed"] == 5
    assert account["maxTasksAllowed"] == 50
    assert account["maxTelemetriesAllowed"] == 25
    assert account["maxRegistryCredentialsAllowed"] == 25
    assert account["lastUpdatedAt"].endswith("Z")

    assert (await admin_client.post("/v2/nvcf/accounts/team-a", json={"name": "Again"})).status_code == 409
    clash = await admin_client.post(
        "/v2/nvcf/accounts/team-b", json={"name": "TeamB", "adminClientId": "team-a-admin"}
    )
    assert clash.status_code == 409

    listed = (await admin_client.get("/v2/nvcf/accounts")).json()["cloudAccounts"]
    assert {a["ncaId"] for a in listed} >= {"nvcf-default", "team-a"}

    got = (await admin_client.get("/v2/nvcf/accounts/team-a")).json()["account"]
    assert got["clientIds"] == ["team-a-admin"]
    assert got["currentNumberFunctions"] == 0
    assert got["telemetries"] == [] and got["registryCredentials"] == []

    patched = await admin_client.patch(
        "/v2/nvcf/accounts/team-a", json={"name": "Team-A2", "maxTelemetriesAllowed": 50}
    )
    assert patched.status_code == 200
    assert patched.json()["account"]["name"] == "Team-A2"
    assert patched.json()["account"]["maxTelemetriesAllowed"] == 50

    assert (await admin_client.delete("/v2/nvcf/accounts/team-a")).status_code == 204
    assert (await admin_client.get("/v2/nvcf/accounts/team-a")).status_code == 404
    assert (await admin_client.delete("/v2/nvcf/accounts/team-a")).status_code == 404
    assert (await admin_client.patch("/v2/nvcf/accounts/team-a", json={"name": "Team-A3"})).status_code == 404


async def test_deleting_an_account_revokes_its_credentials(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    member = await make_client([LIST_FUNCTIONS], nca_id="doomed")
    assert (await admin_client.delete("/v2/nvcf/accounts/doomed")).status_code == 204
    assert (await member.get("/v2/nvcf/accounts")).status_code == 401


async def test_an_account_with_functions_cannot_be_deleted(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    owner = await make_client(nca_id="busy")
    await create_function(owner)
    response = await admin_client.delete("/v2/nvcf/accounts/busy")
    assert response.status_code == 400
    assert "functions" in response.json()["detail"]
    got = (await admin_client.get("/v2/nvcf/accounts/busy")).json()["account"]
    assert got["currentNumberFunctions"] == 1


async def test_an_authorized_party_cannot_be_deleted(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    await make_client(nca_id="partner")  # creates the account
    fn = await create_function(admin_client)
    shared = await admin_client.post(
        f"/v2/nvcf/authorizations/functions/{fn['id']}", json={"authorizedParties": [{"ncaId": "partner"}]}
    )
    assert shared.status_code == 200, shared.text
    response = await admin_client.delete("/v2/nvcf/accounts/partner")
    assert response.status_code == 400
    assert "authorized party" in response.json()["detail"]


async def test_the_callers_own_account_cannot_be_deleted(admin_client: httpx.AsyncClient) -> None:
    assert (await admin_client.delete("/v2/nvcf/accounts/nvcf-default")).status_code == 400


async def test_account_setup_scope_is_required(make_client: Any, http: httpx.AsyncClient) -> None:
    member = await make_client()  # every account scope, not account_setup
    assert (await member.get("/v2/nvcf/accounts")).status_code == 403
    assert (await member.post("/v2/nvcf/accounts/x-team", json={"name": "xteam"})).status_code == 403
    assert (await http.get("/v2/nvcf/accounts")).status_code == 401
    superuser = await make_client([ACCOUNT_SETUP], kind="jwt")
    assert (await superuser.get("/v2/nvcf/accounts")).status_code == 200


@pytest.mark.parametrize(
    ("nca_id", "body", "field"),
    [
        ("team-x", {}, "name"),
        ("team-x", {"name": "abc"}, "name"),
        ("team-x", {"name": "a" * 37}, "name"),
        ("team-x", {"name": "-bad"}, "name"),
        ("team-x", {"name": "bad name"}, "name"),
        ("team-x", {"name": "good", "maxFunctionsAllowed": 0}, "maxFunctionsAllowed"),
        ("team-x", {"name": "good", "maxTasksAllowed": 0}, "maxTasksAllowed"),
        ("team-x", {"name": "good", "maxTelemetriesAllowed": 26}, "maxTelemetriesAllowed"),
        ("team-x", {"name": "good", "maxTelemetriesAllowed": 0}, "maxTelemetriesAllowed"),
        ("team-x", {"name": "good", "maxRegistryCredentialsAllowed": 26}, "maxRegistryCredentialsAllowed"),
        ("team-x", {"name": "good", "maxFunctionsAllowed": "many"}, "maxFunctionsAllowed"),
        ("team-x", {"name": "good", "maxFunctionsAllowed": 2**63}, "maxFunctionsAllowed"),
        ("-team", {"name": "good"}, "ncaId"),
    ],
)
async def test_create_validation(
    admin_client: httpx.AsyncClient, nca_id: str, body: dict[str, Any], field: str
) -> None:
    response = await admin_client.post(f"/v2/nvcf/accounts/{nca_id}", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"name": "ab"}, "name"),
        ({"maxTelemetriesAllowed": 51}, "maxTelemetriesAllowed"),
        ({"maxRegistryCredentialsAllowed": 51}, "maxRegistryCredentialsAllowed"),
        ({"maxFunctionsAllowed": 0}, "maxFunctionsAllowed"),
        ({"maxTasksAllowed": 2**63}, "maxTasksAllowed"),
        ({"maxFunctionsAllowed": 2**31}, "maxFunctionsAllowed"),
    ],
)
async def test_update_validation(admin_client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    response = await admin_client.patch("/v2/nvcf/accounts/nvcf-default", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
