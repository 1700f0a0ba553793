"""JWT validity (account, secret epoch, audience) and delegation (issue 8, Deliver 5).

Real control app on SQLite and PostgreSQL; tokens minted by `POST /token`, or by a real TokenSigner
over the same signing keys when a test needs a token the platform would not mint (another audience).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
from functions_helpers import create_function, function_body

from fnplane.control.auth.components import AuthComponents
from fnplane.control.auth.signing import TokenSigner
from fnplane.control.db.repositories.clients import ClientRepository
from fnplane.control.db.repositories.signing_keys import SigningKeyRepository
from fnplane.control.settings import ControlSettings
from fnplane.shared.scopes import (
    AUTHORIZE_CLIENTS,
    DEPLOY_FUNCTION,
    LIST_FUNCTIONS,
    MANAGE_KEYS,
    REGISTER_FUNCTION,
)


async def _create_sa(client: httpx.AsyncClient, client_id: str, scopes: list[str]) -> httpx.Response:
    return await client.post("/v2/nvcf/service-accounts", json={"clientId": client_id, "scopes": scopes})


async def _token(http: httpx.AsyncClient, client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = await http.post(
        "/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def _as(http: httpx.AsyncClient, token: str) -> int:
    """The status a token gets on an endpoint its scopes allow (list service accounts, manage_keys)."""
    response = await http.get("/v2/nvcf/service-accounts", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def test_a_token_issued_before_a_rotation_is_refused(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    created = await _create_sa(admin_client, "rotating-bot", [MANAGE_KEYS])
    assert created.status_code == 200, created.text
    old = await _token(http, "rotating-bot", created.json()["serviceAccount"]["clientSecret"])
    assert await _as(http, old) == 200  # and now resolved and cached
    rotated = await admin_client.post("/v2/nvcf/service-accounts/rotating-bot/rotate-secret")
    assert rotated.status_code == 200
    assert await _as(http, old) == 401
    new = await _token(http, "rotating-bot", rotated.json()["serviceAccount"]["clientSecret"])
    assert await _as(http, new) == 200


async def test_a_token_of_a_deleted_and_recreated_client_is_refused(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient, make_client: Any
) -> None:
    created = await _create_sa(admin_client, "reused-id", [MANAGE_KEYS])
    secret = created.json()["serviceAccount"]["clientSecret"]
    before = await _token(http, "reused-id", secret)
    assert await _as(http, before) == 200

    # deleted, then the id is taken by another account: the old token is not that account's
    assert (await admin_client.delete("/v2/nvcf/service-accounts/reused-id")).status_code == 204
    other = await make_client([MANAGE_KEYS], nca_id="other-team")
    assert (await _create_sa(other, "reused-id", [MANAGE_KEYS])).status_code == 200
    assert await _as(http, before) == 401

    # deleted again and re-created by the first account: still not a token of the new client
    assert (await other.delete("/v2/nvcf/service-accounts/reused-id")).status_code == 204
    again = await _create_sa(admin_client, "reused-id", [MANAGE_KEYS])
    assert again.status_code == 200
    assert await _as(http, before) == 401
    fresh = await _token(http, "reused-id", again.json()["serviceAccount"]["clientSecret"])
    assert await _as(http, fresh) == 200


async def test_a_token_for_another_audience_is_refused(
    admin_client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    auth: AuthComponents,
    control_engine: Any,
    control_settings: ControlSettings,
) -> None:
    created = await _create_sa(admin_client, "audience-bot", [MANAGE_KEYS])
    assert created.status_code == 200
    # our own signing key, the right client and epoch, another audience
    elsewhere = TokenSigner(
        SigningKeyRepository(control_engine),
        issuer=control_settings.jwt_issuer,
        audience="some-other-service",
        key_hash_secret=control_settings.require_key_hash_secret(),
    )
    client = await ClientRepository(control_engine).get("audience-bot")
    assert client is not None
    foreign = await elsewhere.mint(client, [MANAGE_KEYS], 60)
    response = await http.get(
        "/v2/nvcf/service-accounts", headers={"Authorization": f"Bearer {foreign.token}"}
    )
    assert response.status_code == 401, response.text
    assert "audience" in response.json()["detail"].lower()
    ours = await auth.signer.mint(client, [MANAGE_KEYS], 60)
    assert await _as(http, ours.token) == 200


async def test_a_service_account_never_exceeds_its_creator(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient, make_client: Any
) -> None:
    fn = await create_function(admin_client)
    # more scopes than the caller holds
    scoped = await make_client([MANAGE_KEYS, LIST_FUNCTIONS])
    assert (await _create_sa(scoped, "greedy-bot", [LIST_FUNCTIONS, DEPLOY_FUNCTION])).status_code == 403
    assert (await _create_sa(scoped, "modest-bot", [LIST_FUNCTIONS])).status_code == 200
    # the right scopes, but a key for one function: a service account's tokens see the whole account
    narrow = await make_client(
        [MANAGE_KEYS, LIST_FUNCTIONS], resources=[{"type": "function", "id": f"{fn['id']}/*"}]
    )
    response = await _create_sa(narrow, "narrow-bot", [LIST_FUNCTIONS])
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await admin_client.get("/v2/nvcf/service-accounts/narrow-bot")).status_code == 404


async def test_rotate_is_only_for_service_accounts_the_caller_may_manage(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient, make_client: Any
) -> None:
    powerful = await _create_sa(admin_client, "deployer-bot", [DEPLOY_FUNCTION, MANAGE_KEYS])
    secret = powerful.json()["serviceAccount"]["clientSecret"]
    # same account, manage_keys, but fewer scopes than the service account: it cannot take it over
    keyholder = await make_client([MANAGE_KEYS])
    taken = await keyholder.post("/v2/nvcf/service-accounts/deployer-bot/rotate-secret")
    assert taken.status_code == 403, taken.text
    assert "clientSecret" not in taken.text
    assert (await keyholder.delete("/v2/nvcf/service-accounts/deployer-bot")).status_code == 403
    await _token(http, "deployer-bot", secret)  # the secret did not change
    # another account's service account does not exist for the caller
    foreign = await make_client([MANAGE_KEYS, DEPLOY_FUNCTION], nca_id="foreign-team")
    assert (await foreign.post("/v2/nvcf/service-accounts/deployer-bot/rotate-secret")).status_code == 404
    # one that holds every scope of it may
    peer = await make_client([MANAGE_KEYS, DEPLOY_FUNCTION])
    assert (await peer.post("/v2/nvcf/service-accounts/deployer-bot/rotate-secret")).status_code == 200


async def test_a_version_grant_does_not_pass_whole_function_checks(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    fn = await create_function(admin_client)
    second = await admin_client.post(
        f"/v2/nvcf/functions/{fn['id']}/versions",
        json=function_body(),
    )
    assert second.status_code == 200, second.text
    v1, v2 = fn["versionId"], second.json()["function"]["versionId"]
    scopes = [AUTHORIZE_CLIENTS, REGISTER_FUNCTION, LIST_FUNCTIONS]
    one_version = await make_client(scopes, resources=[{"type": "function", "id": f"{fn['id']}/{v1}"}])
    parties = {"authorizedParties": [{"ncaId": "partner-team"}]}

    # sharing the whole function, a new version, the function's authorization lists: not for a V grant
    shared = await one_version.post(f"/v2/nvcf/authorizations/functions/{fn['id']}", json=parties)
    assert shared.status_code == 403, shared.text
    assert (await one_version.delete(f"/v2/nvcf/authorizations/functions/{fn['id']}")).status_code == 403
    assert (await one_version.get(f"/v2/nvcf/authorizations/functions/{fn['id']}")).status_code == 403
    new_version = await one_version.post(
        f"/v2/nvcf/functions/{fn['id']}/versions",
        json=function_body(),
    )
    assert new_version.status_code == 403, new_version.text
    # its own version: yes; the other version: no; listing shows only its version
    ok = await one_version.post(f"/v2/nvcf/authorizations/functions/{fn['id']}/versions/{v1}", json=parties)
    assert ok.status_code == 200, ok.text
    other = await one_version.post(
        f"/v2/nvcf/authorizations/functions/{fn['id']}/versions/{v2}", json=parties
    )
    assert other.status_code == 403
    listed = await one_version.get(f"/v2/nvcf/functions/{fn['id']}/versions")
    assert [f["versionId"] for f in listed.json()["functions"]] == [v1]

    # a grant on the whole function passes the whole-function checks
    whole = await make_client(scopes, resources=[{"type": "function", "id": f"{fn['id']}/*"}])
    shared = await whole.post(f"/v2/nvcf/authorizations/functions/{fn['id']}", json=parties)
    assert shared.status_code == 200, shared.text
