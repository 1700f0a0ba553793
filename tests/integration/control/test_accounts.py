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


async def test_account_clients_associate_get_and_disassociate(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    """nvcf-api.md 1.12: PATCH .../clients/associate and /disassociate, GET /v2/nvcf/clients/{clientId}."""
    created = await admin_client.post("/v2/nvcf/accounts/team-c", json={"name": "TeamC"})
    assert created.status_code == 200, created.text
    associated = await admin_client.patch(
        "/v2/nvcf/accounts/team-c/clients/associate", json={"adminClientId": "team-c-ops"}
    )
    assert associated.status_code == 200, associated.text
    assert associated.json()["account"]["adminClientIds"] == ["team-c-ops"]
    assert (await admin_client.get("/v2/nvcf/accounts/team-c")).json()["account"]["clientIds"] == [
        "team-c-ops"
    ]
    client = await admin_client.get("/v2/nvcf/clients/team-c-ops")
    assert client.status_code == 200, client.text
    assert client.json() == {"client": {"clientId": "team-c-ops", "ncaId": "team-c", "name": "team-c-ops"}}
    # client ids are global: a second association of the same id, here or elsewhere, is a conflict
    again = await admin_client.patch(
        "/v2/nvcf/accounts/nvcf-default/clients/associate", json={"adminClientId": "team-c-ops"}
    )
    assert again.status_code == 409, again.text
    # the client's secret is set by a super admin; its tokens are refused once it is disassociated
    rotated = await admin_client.post("/v2/nvcf/service-accounts/team-c-ops/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    secret = rotated.json()["serviceAccount"]["clientSecret"]
    token = await admin_client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "list_functions"},
        auth=("team-c-ops", secret),
        headers={"Authorization": ""},
    )
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert (await admin_client.get("/v2/nvcf/functions", headers=bearer)).status_code == 200
    # only a client of that account can be disassociated from it
    elsewhere = await admin_client.patch(
        "/v2/nvcf/accounts/nvcf-default/clients/disassociate", json={"adminClientId": "team-c-ops"}
    )
    assert elsewhere.status_code == 404, elsewhere.text
    removed = await admin_client.patch(
        "/v2/nvcf/accounts/team-c/clients/disassociate", json={"adminClientId": "team-c-ops"}
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["account"]["adminClientIds"] == []
    # its tokens now name an unknown subject: 404, as NVCF answers
    assert (await admin_client.get("/v2/nvcf/functions", headers=bearer)).status_code == 404
    assert (await admin_client.get("/v2/nvcf/clients/team-c-ops")).status_code == 404
    # unknown account, missing or blank client id, no account_setup
    unknown = await admin_client.patch(
        "/v2/nvcf/accounts/nobody/clients/associate", json={"adminClientId": "x-client"}
    )
    assert unknown.status_code == 404
    for body in ({}, {"adminClientId": " "}):
        bad = await admin_client.patch("/v2/nvcf/accounts/team-c/clients/associate", json=body)
        assert bad.status_code == 400 and bad.json()["field"] == "adminClientId", bad.text
    member = await make_client()
    assert (await member.get("/v2/nvcf/clients/team-c-ops")).status_code == 403
    refused = await member.patch(
        "/v2/nvcf/accounts/team-c/clients/associate", json={"adminClientId": "sneaky"}
    )
    assert refused.status_code == 403


async def test_a_super_admin_cannot_disassociate_its_own_client(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    async def client_ids() -> set[str]:
        return set((await admin_client.get("/v2/nvcf/accounts/nvcf-default")).json()["account"]["clientIds"])

    before = await client_ids()
    superuser = await make_client([ACCOUNT_SETUP], kind="jwt")
    (own,) = await client_ids() - before
    response = await superuser.patch(
        "/v2/nvcf/accounts/nvcf-default/clients/disassociate", json={"adminClientId": own}
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "adminClientId"
    assert (await superuser.get("/v2/nvcf/accounts")).status_code == 200
