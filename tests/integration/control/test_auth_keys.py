"""`/v1/keys`: the NVCF-compatible API-key surface, its validation rules and the key lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from fnplane.shared.scopes import INVOKE_FUNCTION, LIST_FUNCTIONS, MANAGE_KEYS


def _expiry(days: float = 30) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": "my key",
        "expires_at": _expiry(),
        "authorizations": {
            "policies": [
                {
                    "aud": "nvidia-cloud-functions-ncp-service-id-aketm",
                    "product": "nv-cloud-functions",
                    "resources": [{"id": "*", "type": "account-functions"}],
                    "scopes": [LIST_FUNCTIONS, MANAGE_KEYS],
                }
            ]
        },
    }
    body.update(overrides)
    return body


async def test_key_lifecycle(admin_client: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
    created = await admin_client.post("/v1/keys", json=_body())
    assert created.status_code == 200, created.text
    key = created.json()
    assert key["value"].startswith("nvapi-") and len(key["value"]) == len("nvapi-") + 43
    assert key["status"] == "ACTIVE"
    assert key["owner_type"] == "USER"
    assert key["created_at"].endswith("Z") and "." in key["created_at"]
    assert key["authorizations"]["policies"][0]["scopes"] == [LIST_FUNCTIONS, MANAGE_KEYS]

    # the new key works
    bearer = {"Authorization": f"Bearer {key['value']}"}
    own = await http.get(f"/v1/keys/{key['id']}", headers=bearer)
    assert own.status_code == 200
    assert own.json()["value"] == f"nvapi-**********{key['value'][-3:]}"

    listed = await admin_client.get("/v1/keys")
    assert listed.status_code == 200
    entry = next(k for k in listed.json()["keys"] if k["id"] == key["id"])
    assert entry["value"] != key["value"] and "**********" in entry["value"]
    assert "authorizations" not in entry

    deleted = await admin_client.delete(f"/v1/keys/{key['id']}")
    assert deleted.status_code == 204
    revoked = await http.get("/v1/keys", headers=bearer)
    assert revoked.status_code == 401
    assert revoked.headers["www-authenticate"] == "Bearer"
    assert revoked.headers["content-type"] == "application/problem+json"
    assert (await admin_client.delete(f"/v1/keys/{key['id']}")).status_code == 404


async def test_expired_key_is_reported_and_refused(make_client: Any, admin_client: httpx.AsyncClient) -> None:
    expired = await make_client([MANAGE_KEYS], expires_in_s=-1)
    response = await expired.get("/v1/keys")
    assert response.status_code == 401
    assert "EXPIRED" in response.json()["detail"]


async def test_update_authorizations(admin_client: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
    key = (await admin_client.post("/v1/keys", json=_body())).json()
    policies = {
        "policies": [{"scopes": [INVOKE_FUNCTION], "resources": [{"type": "function", "id": "f1/*"}]}]
    }
    updated = await admin_client.put(
        f"/v1/keys/{key['id']}/authorizations", json={"authorizations": policies}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["authorizations"]["policies"][0]["scopes"] == [INVOKE_FUNCTION]
    # the key lost manage_keys at once (the cache of this process was invalidated)
    response = await http.get("/v1/keys", headers={"Authorization": f"Bearer {key['value']}"})
    assert response.status_code == 403


async def test_keys_of_another_account_are_not_found(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    key = (await admin_client.post("/v1/keys", json=_body())).json()
    other = await make_client(nca_id="other-account")
    assert (await other.get(f"/v1/keys/{key['id']}")).status_code == 404
    assert (await other.delete(f"/v1/keys/{key['id']}")).status_code == 404
    assert key["id"] not in {k["id"] for k in (await other.get("/v1/keys")).json()["keys"]}


async def test_manage_keys_scope_is_required(make_client: Any, http: httpx.AsyncClient) -> None:
    without = await make_client([LIST_FUNCTIONS])
    assert (await without.get("/v1/keys")).status_code == 403
    assert (await without.post("/v1/keys", json=_body())).status_code == 403
    assert (await http.get("/v1/keys")).status_code == 401


async def test_a_key_never_gets_scopes_its_creator_lacks(make_client: Any) -> None:
    creator = await make_client([MANAGE_KEYS, LIST_FUNCTIONS])
    body = _body()
    body["authorizations"]["policies"][0]["scopes"] = [LIST_FUNCTIONS, INVOKE_FUNCTION]
    response = await creator.post("/v1/keys", json=body)
    assert response.status_code == 403
    assert "invoke_function" in response.json()["detail"]


async def test_a_key_never_gets_resources_its_creator_lacks(make_client: Any) -> None:
    creator = await make_client([MANAGE_KEYS, LIST_FUNCTIONS], resources=[{"type": "function", "id": "f1/*"}])
    body = _body()
    body["authorizations"]["policies"][0]["scopes"] = [LIST_FUNCTIONS]
    assert (await creator.post("/v1/keys", json=body)).status_code == 403
    body["authorizations"]["policies"][0]["resources"] = [{"type": "function", "id": "f1/v1"}]
    assert (await creator.post("/v1/keys", json=body)).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"description": None}, "description"),
        ({"description": ""}, "description"),
        ({"description": "bad/char"}, "description"),
        ({"description": "x" * 65}, "description"),
        ({"expires_at": None}, "expires_at"),
        ({"expires_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}, "expires_at"),
        ({"expires_at": _expiry(366)}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"authorizations": None}, "authorizations"),
        (
            {
                "authorizations": {
                    "policies": [{"scopes": [LIST_FUNCTIONS], "resources": [{"type": "x", "id": "*"}]}]
                }
            },
            "authorizations.policies.0.resources.0.type",
        ),
        (
            {
                "authorizations": {
                    "policies": [{"scopes": [], "resources": [{"type": "function", "id": "only-fid"}]}]
                }
            },
            "authorizations.policies.0.resources.0.id",
        ),
        (
            {"authorizations": {"policies": [{"scopes": [LIST_FUNCTIONS, "list_everything"]}]}},
            "authorizations.policies.0.scopes.1",
        ),
        (
            {"authorizations": {"policies": [{"scopes": [LIST_FUNCTIONS], "product": "p" * 2100}]}},
            "authorizations",
        ),
        ({"audience_service_ids": []}, "audience_service_ids"),
        ({"audience_service_ids": ["someone-else"]}, "audience_service_ids"),
    ],
)
async def test_create_validation(
    admin_client: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    response = await admin_client.post("/v1/keys", json=_body(**overrides))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


async def test_an_unknown_scope_is_a_400_naming_it(admin_client: httpx.AsyncClient, make_client: Any) -> None:
    """An unknown scope is bad input (400 naming the field and the rule), not a missing privilege (403),
    for a key's policy as for a service account."""
    body = _body()
    body["authorizations"]["policies"][0]["scopes"] = [LIST_FUNCTIONS, "root"]
    response = await admin_client.post("/v1/keys", json=body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["field"] == "authorizations.policies.0.scopes.1"
    assert LIST_FUNCTIONS in problem["rule"] and "'root'" in problem["detail"]
    key = (await admin_client.post("/v1/keys", json=_body())).json()
    changed = await admin_client.put(
        f"/v1/keys/{key['id']}/authorizations", json={"authorizations": {"policies": [{"scopes": ["root"]}]}}
    )
    assert changed.status_code == 400 and changed.json()["field"] == "authorizations.policies.0.scopes.0"
    # a weak caller gets the same 400: the rule is checked before what it may hand out
    weak = await make_client([MANAGE_KEYS])
    assert (await weak.post("/v1/keys", json=body)).status_code == 400
    account = await admin_client.post("/v2/nvcf/service-accounts", json={"scopes": [LIST_FUNCTIONS, "root"]})
    assert account.status_code == 400, account.text
    assert account.json()["field"] == "scopes.1"


async def test_keys_per_owner_limit(admin_client: httpx.AsyncClient, control_settings: Any) -> None:
    # the admin key itself is one of its owner's keys
    for _ in range(control_settings.max_api_keys_per_owner - 1):
        assert (await admin_client.post("/v1/keys", json=_body())).status_code == 200
    response = await admin_client.post("/v1/keys", json=_body())
    assert response.status_code == 400
    assert response.json()["detail"] == "Actor reached maximum allowed number of keys in service"


async def test_unknown_fields_are_ignored(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.post(
        "/v1/keys", json=_body(something_else=1), headers={"Key-Issuer-Id": "x"}
    )
    assert response.status_code == 200


async def test_a_weak_key_can_neither_narrow_nor_revoke_a_stronger_one(
    admin_client: httpx.AsyncClient, make_client: Any, http: httpx.AsyncClient
) -> None:
    strong = (await admin_client.post("/v1/keys", json=_body())).json()
    weak = await make_client([MANAGE_KEYS], resources=[{"type": "function", "id": "f1/v1"}])
    emptied = await weak.put(
        f"/v1/keys/{strong['id']}/authorizations", json={"authorizations": {"policies": []}}
    )
    assert emptied.status_code == 403 and "list_functions" in emptied.json()["detail"], emptied.text
    assert (await weak.delete(f"/v1/keys/{strong['id']}")).status_code == 403
    # the stronger key still holds everything it had
    assert (
        await http.get("/v1/keys", headers={"Authorization": f"Bearer {strong['value']}"})
    ).status_code == 200
    # a key the weak one could have made itself it may revoke
    body = _body()
    body["authorizations"]["policies"][0].update(
        scopes=[MANAGE_KEYS], resources=[{"type": "function", "id": "f1/v1"}]
    )
    own = await weak.post("/v1/keys", json=body)
    assert own.status_code == 200, own.text
    assert (await weak.delete(f"/v1/keys/{own.json()['id']}")).status_code == 204


async def test_a_policy_for_another_audience_grants_nothing_here(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    elsewhere = _body()
    elsewhere["authorizations"]["policies"][0]["aud"] = "another-service"
    key = (await admin_client.post("/v1/keys", json=elsewhere)).json()
    assert (
        await http.get("/v1/keys", headers={"Authorization": f"Bearer {key['value']}"})
    ).status_code == 403
    listed = _body()
    del listed["authorizations"]["policies"][0]["aud"]
    listed["authorizations"]["policies"][0]["auds"] = [
        "another-service",
        "nvidia-cloud-functions-ncp-service-id-aketm",
    ]
    key = (await admin_client.post("/v1/keys", json=listed)).json()
    assert (
        await http.get("/v1/keys", headers={"Authorization": f"Bearer {key['value']}"})
    ).status_code == 200
