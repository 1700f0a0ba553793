"""Registry credentials (nvcf-api.md 1.9): CRUD with `manage_registry_credentials`, the secret sealed
at rest and never answered, opened only into the assignment of an instance whose image lives on that
registry; and the image allowlist at registration. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from functions_helpers import assignments, create_function, deploy, register_cluster

from fnplane.control.app import create_app
from fnplane.control.db import tables
from fnplane.shared.scopes import LIST_FUNCTIONS, MANAGE_REGISTRY_CREDENTIALS

PASSWORD = "pa55-that-must-never-be-stored-or-shown"
LOGIN = base64.b64encode(f"$oauthtoken:{PASSWORD}".encode()).decode()


def body(**extra: Any) -> dict[str, Any]:
    return {
        "registryHostname": "nvcr.io",
        "secret": {"name": "ngc", "value": LOGIN},
        "artifactTypes": ["container"],
        "description": "NGC",
        **extra,
    }


async def test_create_list_get_update_delete_and_the_secret_never_comes_back(
    admin_client: httpx.AsyncClient, control_engine: Any
) -> None:
    r = await admin_client.post("/v2/nvcf/registry-credentials", json=body())
    assert r.status_code == 200, r.text
    credential = r.json()["registryCredential"]
    assert credential["registryHostname"] == "nvcr.io" and credential["registryName"] == "NGC"
    assert credential["artifactTypes"] == ["CONTAINER"] and credential["provisionedBy"] == "USER"
    assert credential["registryCredentialName"] == "ngc" and credential["ncaId"] == "nvcf-default"
    cid = credential["registryCredentialId"]

    listed = await admin_client.get("/v2/nvcf/registry-credentials")
    assert [c["registryCredentialId"] for c in listed.json()["registryCredentials"]] == [cid]
    helm_only = await admin_client.get("/v2/nvcf/registry-credentials", params={"artifactType": "HELM"})
    assert helm_only.json()["registryCredentials"] == []
    one = await admin_client.get(f"/v2/nvcf/registry-credentials/{cid}")
    assert one.status_code == 200 and one.json()["registryCredential"]["registryCredentialId"] == cid

    patched = await admin_client.patch(
        f"/v2/nvcf/registry-credentials/{cid}",
        json={"artifactTypeEnums": ["HELM"], "secret": {"name": "ngc", "value": LOGIN}},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["registryCredential"]["artifactTypes"] == ["CONTAINER", "HELM"]

    for answer in (r, listed, one, patched):
        assert PASSWORD not in answer.text and LOGIN not in answer.text
    async with control_engine.connect() as conn:
        rows = (await conn.execute(tables.registry_credentials.select())).all()
    assert rows and all(PASSWORD not in str(row) and LOGIN not in str(row) for row in rows)

    assert (await admin_client.delete(f"/v2/nvcf/registry-credentials/{cid}")).status_code == 204
    assert (await admin_client.get(f"/v2/nvcf/registry-credentials/{cid}")).status_code == 404
    assert (await admin_client.delete(f"/v2/nvcf/registry-credentials/{cid}")).status_code == 404


async def test_bad_input_is_a_400_naming_the_field_and_duplicates_a_409(
    admin_client: httpx.AsyncClient,
) -> None:
    for bad, field in (
        (body(registryHostname="not a host"), "registryHostname"),
        (body(registryHostname="registry.example.com"), "registryHostname"),  # not recognized
        (body(registryHostname="nvcr.io:0"), "registryHostname"),  # no such port
        (body(registryHostname="nvcr.io:http"), "registryHostname"),
        (body(registryHostname="127.0.0.1"), "registryHostname"),  # a valid host, not recognized
        (body(secret={"name": "x", "value": "bm8tY29sb24="}), "secret.value"),  # "no-colon"
        (body(artifactTypes=[]), "artifactTypes"),
        (body(artifactTypes=["TAPE"]), "artifactTypes"),
    ):
        r = await admin_client.post("/v2/nvcf/registry-credentials", json=bad)
        assert r.status_code == 400, r.text
        assert r.json()["field"].startswith(field), r.json()
    assert (await admin_client.post("/v2/nvcf/registry-credentials", json=body())).status_code == 200
    again = await admin_client.post("/v2/nvcf/registry-credentials", json=body())
    assert again.status_code == 409, again.text
    # ECR hosts match the recognized dkr.ecr.amazonaws.com with their region inside
    ecr = body(registryHostname="123456789012.dkr.ecr.us-east-1.amazonaws.com")
    assert (await admin_client.post("/v2/nvcf/registry-credentials", json=ecr)).status_code == 200
    recognized = await admin_client.get("/v2/nvcf/recognized-registries")
    hosts = [e["registryHostname"] for e in recognized.json()["recognizedRegistries"]["CONTAINER"]]
    assert "nvcr.io" in hosts and "docker.io" in hosts


async def test_the_scope_is_required_and_accounts_see_only_their_own(make_client: Any) -> None:
    owner = await make_client([MANAGE_REGISTRY_CREDENTIALS])
    other = await make_client([MANAGE_REGISTRY_CREDENTIALS], nca_id="other-account")
    lister = await make_client([LIST_FUNCTIONS])
    assert (await lister.get("/v2/nvcf/registry-credentials")).status_code == 403
    assert (await lister.post("/v2/nvcf/registry-credentials", json=body())).status_code == 403
    created = await owner.post("/v2/nvcf/registry-credentials", json=body())
    cid = created.json()["registryCredential"]["registryCredentialId"]
    assert (await other.get(f"/v2/nvcf/registry-credentials/{cid}")).status_code == 404
    assert (await other.get("/v2/nvcf/registry-credentials")).json()["registryCredentials"] == []
    assert (await other.delete(f"/v2/nvcf/registry-credentials/{cid}")).status_code == 404


async def test_the_login_reaches_only_the_assignment_of_an_image_on_that_registry(
    admin_client: httpx.AsyncClient,
) -> None:
    await register_cluster(admin_client)
    r = await admin_client.post("/v2/nvcf/registry-credentials", json=body())
    assert r.status_code == 200, r.text
    on_ngc = await create_function(admin_client, name="ngc-image", containerImage="nvcr.io/acme/model:1")
    elsewhere = await create_function(admin_client, name="hub-image", containerImage="library/python:3")
    for fn in (on_ngc, elsewhere):
        assert (await deploy(admin_client, fn)).status_code == 200
    by_version = {i["functionVersionId"]: i for i in await assignments(admin_client)}
    auth = by_version[on_ngc["versionId"]]["registryAuth"]
    assert auth == {"username": "$oauthtoken", "password": PASSWORD, "serveraddress": "nvcr.io"}
    assert by_version[elsewhere["versionId"]].get("registryAuth") is None


async def test_the_image_allowlist_refuses_other_registries(
    control_settings: Any, control_engine: Any, admin_key: str
) -> None:
    settings = control_settings.model_copy(update={"image_registries": ["nvcr.io"]})
    app = create_app(settings, control_engine)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://control", headers=headers) as client:
        base = {"inferenceUrl": "/x", "inferencePort": 8000, "containerArgs": "python3 serve.py"}
        ok = {**base, "name": "ok", "containerImage": "nvcr.io/a/b:1"}
        allowed = await client.post("/v2/nvcf/functions", json=ok)
        assert allowed.status_code == 200, allowed.text
        no = {**base, "name": "no", "containerImage": "python:3"}
        refused = await client.post("/v2/nvcf/functions", json=no)
        assert refused.status_code == 400 and refused.json()["field"] == "containerImage", refused.text


async def test_a_self_hosted_registry_on_an_address_and_port_gets_its_login(
    control_settings: Any, control_engine: Any, admin_key: str
) -> None:
    # a registry the operator recognizes by its address: its credential names the port the image names
    settings = control_settings.model_copy(update={"recognized_registries": ["127.0.0.1"]})
    app = create_app(settings, control_engine)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://control", headers=headers) as client:
        await register_cluster(client)
        for bad in ("127.0.0.1:65536", "127.0.0.1:", "127.0.0.300:5000"):
            r = await client.post("/v2/nvcf/registry-credentials", json=body(registryHostname=bad))
            assert r.status_code == 400 and r.json()["field"] == "registryHostname", (bad, r.text)
        r = await client.post("/v2/nvcf/registry-credentials", json=body(registryHostname="127.0.0.1:5000"))
        assert r.status_code == 200, r.text
        assert r.json()["registryCredential"]["registryHostname"] == "127.0.0.1:5000"
        there = await create_function(client, name="there", containerImage="127.0.0.1:5000/team/echo:1")
        other_port = await create_function(client, name="other", containerImage="127.0.0.1:5001/echo:1")
        for fn in (there, other_port):
            assert (await deploy(client, fn)).status_code == 200
        by_version = {i["functionVersionId"]: i for i in await assignments(client)}
    auth = by_version[there["versionId"]]["registryAuth"]
    assert auth == {"username": "$oauthtoken", "password": PASSWORD, "serveraddress": "127.0.0.1:5000"}
    assert by_version[other_port["versionId"]].get("registryAuth") is None


async def test_the_account_lists_its_registry_credentials(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    empty = await admin_client.get("/v2/nvcf/accounts/nvcf-default")
    assert empty.status_code == 200 and empty.json()["account"]["registryCredentials"] == []
    first = (await admin_client.post("/v2/nvcf/registry-credentials", json=body())).json()
    second = (
        await admin_client.post(
            "/v2/nvcf/registry-credentials", json=body(secret={"name": "ngc-ci", "value": LOGIN})
        )
    ).json()
    # another account's credential is not this account's
    other = await make_client([MANAGE_REGISTRY_CREDENTIALS], nca_id="other-account")
    assert (await other.post("/v2/nvcf/registry-credentials", json=body())).status_code == 200
    account = (await admin_client.get("/v2/nvcf/accounts/nvcf-default")).json()["account"]
    # in the shape GET /v2/nvcf/registry-credentials gives them, without the secret
    assert account["registryCredentials"] == [first["registryCredential"], second["registryCredential"]]
    assert PASSWORD not in str(account) and LOGIN not in str(account)
    assert account["maxRegistryCredentialsAllowed"] == 25
    others = (await admin_client.get("/v2/nvcf/accounts/other-account")).json()["account"]
    assert [c["ncaId"] for c in others["registryCredentials"]] == ["other-account"]
    cid = first["registryCredential"]["registryCredentialId"]
    assert (await admin_client.delete(f"/v2/nvcf/registry-credentials/{cid}")).status_code == 204
    account = (await admin_client.get("/v2/nvcf/accounts/nvcf-default")).json()["account"]
    assert account["registryCredentials"] == [second["registryCredential"]]
