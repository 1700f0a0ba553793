"""Service accounts, `POST /token` (OAuth2 client credentials), JWKS, and JWTs across restarts."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fnplane.control.app import create_app
from fnplane.control.db.engine import open_database
from fnplane.control.db.repositories.signing_keys import SigningKeyRecord, SigningKeyRepository
from fnplane.control.settings import ControlSettings
from fnplane.shared.scopes import DEPLOY_FUNCTION, INVOKE_FUNCTION, LIST_FUNCTIONS, MANAGE_KEYS


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def _service_account(
    admin: httpx.AsyncClient, scopes: list[str], client_id: str = "ci-bot"
) -> dict[str, Any]:
    response = await admin.post(
        "/v2/nvcf/service-accounts", json={"clientId": client_id, "name": "CI bot", "scopes": scopes}
    )
    assert response.status_code == 200, response.text
    account: dict[str, Any] = response.json()["serviceAccount"]
    return account


async def _token(http: httpx.AsyncClient, client_id: str, secret: str, **form: str) -> httpx.Response:
    return await http.post(
        "/token", data={"grant_type": "client_credentials", **form}, headers=_basic(client_id, secret)
    )


async def test_token_scopes_are_requested_intersected_with_allowed(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient, control_settings: ControlSettings
) -> None:
    sa = await _service_account(admin_client, [LIST_FUNCTIONS, INVOKE_FUNCTION, MANAGE_KEYS])
    assert sa["clientId"] == "ci-bot" and sa["ncaId"] == "nvcf-default" and sa["clientSecret"]

    response = await _token(http, "ci-bot", sa["clientSecret"], scope=f"{LIST_FUNCTIONS} {DEPLOY_FUNCTION}")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == control_settings.jwt_ttl_s
    assert body["scope"] == LIST_FUNCTIONS
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["scopes"] == [LIST_FUNCTIONS]
    assert claims["sub"] == claims["azp"] == "ci-bot"
    assert claims["iss"] == control_settings.jwt_issuer
    assert claims["exp"] - claims["iat"] == control_settings.jwt_ttl_s
    assert {"nbf", "jti", "aud"} <= claims.keys()

    everything = (await _token(http, "ci-bot", sa["clientSecret"])).json()
    assert sorted(everything["scope"].split()) == sorted([LIST_FUNCTIONS, INVOKE_FUNCTION, MANAGE_KEYS])
    # the token is a working credential: manage_keys lets it list keys, nothing else
    bearer = {"Authorization": f"Bearer {everything['access_token']}"}
    assert (await http.get("/v2/nvcf/service-accounts", headers=bearer)).status_code == 200
    narrow = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await http.get("/v2/nvcf/service-accounts", headers=narrow)).status_code == 403


async def test_oauth_errors(admin_client: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
    sa = await _service_account(admin_client, [LIST_FUNCTIONS])
    wrong = await _token(http, "ci-bot", "not-the-secret")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    unknown = await _token(http, "nobody", "x")
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    no_auth = await http.post("/token", data={"grant_type": "client_credentials"})
    assert no_auth.status_code == 401 and no_auth.json()["error"] == "invalid_client"
    scope = await _token(http, "ci-bot", sa["clientSecret"], scope=DEPLOY_FUNCTION)
    assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"
    grant = await http.post(
        "/token", data={"grant_type": "password"}, headers=_basic("ci-bot", sa["clientSecret"])
    )
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    missing = await http.post("/token", data={}, headers=_basic("ci-bot", sa["clientSecret"]))
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    # a parameter given twice is refused, not read as its last value (RFC 6749 3.2)
    twice = await http.post(
        "/token",
        content=b"grant_type=password&grant_type=client_credentials",
        headers={**_basic("ci-bot", sa["clientSecret"]), "content-type": "application/x-www-form-urlencoded"},
    )
    assert twice.status_code == 400 and twice.json()["error"] == "invalid_request"
    assert "grant_type is given more than once" in twice.json()["error_description"]
    form = await http.post(
        "/token",
        data={"grant_type": "client_credentials", "client_id": "ci-bot", "client_secret": sa["clientSecret"]},
    )
    assert form.status_code == 200


async def test_rotate_invalidates_the_old_secret(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    sa = await _service_account(admin_client, [LIST_FUNCTIONS])
    rotated = await admin_client.post("/v2/nvcf/service-accounts/ci-bot/rotate-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["serviceAccount"]["clientSecret"]
    assert new_secret != sa["clientSecret"]
    assert "secretRotatedAt" in rotated.json()["serviceAccount"]
    assert (await _token(http, "ci-bot", sa["clientSecret"])).status_code == 401
    assert (await _token(http, "ci-bot", new_secret)).status_code == 200


async def test_service_account_crud_and_rules(
    admin_client: httpx.AsyncClient, make_client: Any, http: httpx.AsyncClient
) -> None:
    sa = await _service_account(admin_client, [LIST_FUNCTIONS])
    token = (await _token(http, "ci-bot", sa["clientSecret"])).json()["access_token"]
    listed = (await admin_client.get("/v2/nvcf/service-accounts")).json()["serviceAccounts"]
    assert [s["clientId"] for s in listed] == ["ci-bot"]
    assert "clientSecret" not in listed[0]
    got = await admin_client.get("/v2/nvcf/service-accounts/ci-bot")
    assert got.json()["serviceAccount"]["scopes"] == [LIST_FUNCTIONS]

    # other accounts do not see it; ids are global, so a second create conflicts
    other = await make_client([MANAGE_KEYS, LIST_FUNCTIONS], nca_id="other-account")
    assert (await other.get("/v2/nvcf/service-accounts/ci-bot")).status_code == 404
    assert (await other.delete("/v2/nvcf/service-accounts/ci-bot")).status_code == 404
    conflict = await other.post(
        "/v2/nvcf/service-accounts", json={"clientId": "ci-bot", "scopes": [LIST_FUNCTIONS]}
    )
    assert conflict.status_code == 409
    # a service account never gets scopes its creator lacks
    greedy = await other.post("/v2/nvcf/service-accounts", json={"scopes": [DEPLOY_FUNCTION]})
    assert greedy.status_code == 403
    generated = await other.post("/v2/nvcf/service-accounts", json={"scopes": [LIST_FUNCTIONS]})
    assert generated.status_code == 200 and generated.json()["serviceAccount"]["clientId"].startswith("sa-")

    assert (await admin_client.delete("/v2/nvcf/service-accounts/ci-bot")).status_code == 204
    assert (await admin_client.get("/v2/nvcf/service-accounts/ci-bot")).status_code == 404
    # tokens of a deleted client name an unknown subject: 404, as NVCF answers
    gone = await http.get("/v2/nvcf/service-accounts", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": []}, "scopes"),
        ({}, "scopes"),
        ({"clientId": "a b", "scopes": [LIST_FUNCTIONS]}, "clientId"),
        ({"clientId": "ab", "scopes": [LIST_FUNCTIONS]}, "clientId"),
        ({"name": "", "scopes": [LIST_FUNCTIONS]}, "name"),
        ({"name": "n" * 129, "scopes": [LIST_FUNCTIONS]}, "name"),
    ],
)
async def test_service_account_validation(
    admin_client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await admin_client.post("/v2/nvcf/service-accounts", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_jwks_verifies_a_minted_token(admin_client: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
    sa = await _service_account(admin_client, [LIST_FUNCTIONS])
    token = (await _token(http, "ci-bot", sa["clientSecret"])).json()["access_token"]
    jwks = await http.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    keys = {k["kid"]: k for k in jwks.json()["keys"]}
    assert all(k["kty"] == "EC" and k["crv"] == "P-256" and k["alg"] == "ES256" for k in keys.values())
    kid = jwt.get_unverified_header(token)["kid"]
    public = jwt.PyJWK(keys[kid]).key
    claims = jwt.decode(token, public, algorithms=["ES256"], options={"verify_aud": False})
    assert claims["scopes"] == [LIST_FUNCTIONS]


async def test_tokens_survive_a_restart(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient, control_settings: ControlSettings
) -> None:
    sa = await _service_account(admin_client, [LIST_FUNCTIONS, MANAGE_KEYS])
    token = (await _token(http, "ci-bot", sa["clientSecret"])).json()["access_token"]
    expiry = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    created = await admin_client.post(
        "/v1/keys",
        json={
            "description": "survivor",
            "expires_at": expiry,
            "authorizations": {"policies": [{"scopes": [MANAGE_KEYS], "resources": []}]},
        },
    )
    assert created.status_code == 200, created.text
    key = created.json()
    # a new process: new engine, new app, same database
    engine = await open_database(control_settings.database_url)
    try:
        app = create_app(control_settings, engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as fresh:
            for bearer in (token, key["value"]):
                response = await fresh.get(
                    "/v2/nvcf/service-accounts", headers={"Authorization": f"Bearer {bearer}"}
                )
                assert response.status_code == 200, response.text
            jwks = (await fresh.get("/.well-known/jwks.json")).json()
            assert jwt.get_unverified_header(token)["kid"] in {k["kid"] for k in jwks["keys"]}
    finally:
        await engine.dispose()


async def test_jwt_credentials_on_routes(make_client: Any, http: httpx.AsyncClient) -> None:
    expired = await make_client([MANAGE_KEYS], kind="jwt", expires_in_s=-5)
    response = await expired.get("/v1/keys")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "expired" in response.json()["detail"]
    for header in ("Bearer not-a-token", "Basic abc", "Bearer "):
        assert (await http.get("/v1/keys", headers={"Authorization": header})).status_code == 401


async def test_signing_keys_are_stored_encrypted_under_the_key_hash_secret(
    admin_client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    control_settings: ControlSettings,
    control_engine: Any,
) -> None:
    sa = await _service_account(admin_client, [LIST_FUNCTIONS])
    token = (await _token(http, "ci-bot", sa["clientSecret"])).json()["access_token"]
    records = await SigningKeyRepository(control_engine).list()
    assert records
    for record in records:
        assert record.private_key_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(record.private_key_pem.encode(), password=None)
    # the same database under another secret cannot use those keys: the token is not accepted there
    other = create_app(
        control_settings.model_copy(update={"key_hash_secret": "another-secret"}), control_engine
    )
    transport = httpx.ASGITransport(app=other)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as foreign:
        response = await foreign.get(
            "/v2/nvcf/service-accounts", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, response.text
        assert "unknown key" in response.json()["detail"]
        jwks = (await foreign.get("/.well-known/jwks.json")).json()
        assert jwt.get_unverified_header(token)["kid"] not in {k["kid"] for k in jwks["keys"]}


async def test_a_plaintext_key_planted_in_the_table_never_signs_or_verifies(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient, control_engine: Any
) -> None:
    sa = await _service_account(admin_client, [LIST_FUNCTIONS])
    planted = ec.generate_private_key(ec.SECP256R1())
    pem = planted.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    # newest and active: it would be the signing key if plaintext keys were trusted
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert await SigningKeyRepository(control_engine).insert(SigningKeyRecord("planted", pem, True, later))
    now = int(datetime.now(UTC).timestamp())
    forged = jwt.encode(
        {"iss": "fnplane", "sub": "ci-bot", "iat": now, "exp": now + 60, "scopes": [LIST_FUNCTIONS]},
        planted,
        algorithm="ES256",
        headers={"kid": "planted"},
    )
    response = await http.get("/v2/nvcf/service-accounts", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401, response.text
    token = (await _token(http, "ci-bot", sa["clientSecret"])).json()["access_token"]
    assert jwt.get_unverified_header(token)["kid"] != "planted"
    jwks = (await http.get("/.well-known/jwks.json")).json()
    assert "planted" not in {k["kid"] for k in jwks["keys"]}


async def test_super_admin_hands_out_the_first_credential_of_a_new_account(
    admin_client: httpx.AsyncClient, make_client: Any, http: httpx.AsyncClient
) -> None:
    created = await admin_client.post(
        "/v2/nvcf/accounts/tenant-b", json={"name": "tenant-b", "adminClientId": "tenant-b-admin"}
    )
    assert created.status_code == 200, created.text
    # the admin client has no secret until a super admin sets one; then it is a working OAuth2 client
    assert (await _token(http, "tenant-b-admin", "x")).status_code == 401
    rotated = await admin_client.post("/v2/nvcf/service-accounts/tenant-b-admin/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    sa = rotated.json()["serviceAccount"]
    assert sa["ncaId"] == "tenant-b" and sa["clientSecret"]
    token = (await _token(http, "tenant-b-admin", sa["clientSecret"])).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    listed = await http.get("/v2/nvcf/service-accounts", headers=bearer)
    assert listed.status_code == 200 and listed.json()["serviceAccounts"][0]["ncaId"] == "tenant-b"
    # an account's own key manager still cannot touch another account's clients
    other = await make_client([MANAGE_KEYS], nca_id="other-account")
    assert (await other.post("/v2/nvcf/service-accounts/tenant-b-admin/rotate-secret")).status_code == 404
    assert (await admin_client.post("/v2/nvcf/service-accounts/nobody/rotate-secret")).status_code == 404
