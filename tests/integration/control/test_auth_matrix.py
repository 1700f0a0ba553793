"""The auth matrix: every control-plane operation x every kind of caller gives the status issue 2 says.

Operations are enumerated from the app's own OpenAPI document, where `requires(...)` records the
scopes of each operation (`security: [{"fnplane": [...]}]`), so a new endpoint is covered the day it is
added. An operation without declared scopes must be listed in PUBLIC or SELF_AUTHENTICATED below,
otherwise this test fails (an endpoint someone forgot to protect).

For each operation, against a fresh "world" (a function with a deployed version and a placed instance,
an API key, a service account, an account) whose ids fill the path parameters:

* no token, a malformed token, an expired JWT            -> 401
* a valid key of the owner's account without the scope   -> 403
* a valid key with the scope                              -> neither 401 nor 403 (nor 404, nor a 5xx other
  than 503: instance logs need the NATS link to the agent, which this app has not)
* a key of another account, with the scope, when the path names one of the owner's resources -> 404
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from functions_helpers import assignments, create_function, deploy, register_cluster, spec

from fnplane.control.auth.api_keys import authorizations_for
from fnplane.control.auth.components import AuthComponents
from fnplane.shared.scopes import (
    ADMIN_SCOPES,
    CLUSTER_MANAGEMENT,
    INVOKE_FUNCTION,
    MANAGE_KEYS,
)

# Deliberately unauthenticated.
PUBLIC = {("POST", "/token"), ("GET", "/.well-known/jwks.json")}
# Authenticated by the handler itself; the scope that the body below asks for.
SELF_AUTHENTICATED = {("POST", "/v1/fnplane/access"): [INVOKE_FUNCTION]}
# Path parameters that name a tenant's resource: a caller of another account must get 404.
RESOURCE_PARAMS = {
    "functionId",
    "functionVersionId",
    "versionId",
    "deploymentId",
    "gpuSpecificationId",
    "instanceId",
    "key_id",
    "client_id",
    "telemetryId",
    "registryCredentialId",
}
# Path parameters that are not tenant-owned (super-admin account and client ids, agent cluster names).
SHARED_PARAMS = {"nca_id", "clientId", "clusterName"}

_FUNCTION_VERSION = "/v2/nvcf/functions/{functionId}/versions/{functionVersionId}"
_DEPLOYMENT = "/v2/nvcf/deployments/functions/{functionId}/versions/{functionVersionId}"
_AUTHZ = "/v2/nvcf/authorizations/functions/{functionId}"
_AUTHZ_VERSION = "/v2/nvcf/authorizations/functions/{functionId}/versions/{functionVersionId}"
# the world shares with matrix-friend already (NVCF: add needs an existing list, remove a present party)
_ADD = {"authorizedParty": {"ncaId": "matrix-friend-2"}}
_REMOVE = {"authorizedParty": {"ncaId": "matrix-friend"}}


def _bodies(world: dict[str, str]) -> dict[tuple[str, str], Any]:
    """Valid bodies, so that a 404 for a foreign resource is not masked by a 400 for the body."""
    expiry = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    key_body = {"description": "matrix", "expires_at": expiry, "authorizations": {"policies": []}}
    return {
        ("POST", "/v2/nvcf/functions"): {"name": "matrix-fn", "inferenceUrl": "/x", "containerArgs": "x"},
        ("POST", "/v2/nvcf/functions/{functionId}/versions"): {
            "name": "matrix-fn",
            "inferenceUrl": "/x",
            "containerArgs": "x",
        },
        ("PUT", _FUNCTION_VERSION): {"tags": ["matrix"]},
        ("PUT", "/v2/nvcf/metadata/functions/{functionId}/versions/{functionVersionId}"): {
            "tags": ["matrix"]
        },
        ("PUT", "/v2/nvcf/ratelimit/functions/{functionId}/versions/{versionId}"): {
            "rateLimit": {"rateLimit": "5-S"}
        },
        ("POST", _DEPLOYMENT): {"deploymentSpecifications": [spec(0, 1)]},
        ("PUT", _DEPLOYMENT): {"deploymentSpecifications": [spec(1, 2)]},
        ("PATCH", "/v2/nvcf/deployments/{deploymentId}/gpu-specifications/{gpuSpecificationId}"): {
            "maxInstances": 3
        },
        ("POST", _AUTHZ): {"authorizedParties": [{"ncaId": "matrix-friend"}]},
        ("POST", _AUTHZ_VERSION): {"authorizedParties": [{"ncaId": "matrix-friend"}]},
        ("PATCH", _AUTHZ + "/add"): _ADD,
        ("PATCH", _AUTHZ + "/remove"): _REMOVE,
        ("PATCH", _AUTHZ_VERSION + "/add"): _ADD,
        ("PATCH", _AUTHZ_VERSION + "/remove"): _REMOVE,
        ("POST", "/v1/keys"): key_body,
        ("PUT", "/v1/keys/{key_id}/authorizations"): {"authorizations": {"policies": []}},
        # the caller holds manage_keys only, and grants nothing it lacks
        ("POST", "/v2/nvcf/service-accounts"): {"scopes": [MANAGE_KEYS]},
        ("POST", "/v2/nvcf/accounts/{nca_id}"): {"name": "matrix-new"},
        ("PATCH", "/v2/nvcf/accounts/{nca_id}"): {"name": "matrix-renamed"},
        ("POST", "/v1/fnplane/instances/{instanceId}/reports"): {"state": "starting"},
        ("POST", "/v1/fnplane/access"): {"scope": INVOKE_FUNCTION, "functionId": world["functionId"]},
        # the world's version is deployed without secrets: the owner gets 400 (only INACTIVE ones may get
        # their first secrets), which still shows the caller passed authentication and authorization
        ("PUT", "/v2/nvcf/secrets/functions/{functionId}/versions/{versionId}"): {
            "secrets": [{"name": "MATRIX", "value": "x"}]
        },
        ("POST", "/v2/nvcf/registry-credentials"): _registry_credential("matrix-post"),
        ("PATCH", "/v2/nvcf/registry-credentials/{registryCredentialId}"): {"artifactTypeEnums": ["HELM"]},
        ("POST", "/v2/nvcf/telemetries"): _telemetry("matrix-post"),
        ("PUT", "/v2/nvcf/secrets/telemetries/{telemetryId}"): {
            "secret": {"name": "matrix-telemetry", "value": "new-token"}
        },
    }


def _registry_credential(name: str) -> dict[str, Any]:
    login = "dXNlcjpwYXNz"  # user:pass
    return {
        "registryHostname": "nvcr.io",
        "secret": {"name": name, "value": login},
        "artifactTypes": ["CONTAINER"],
    }


def _telemetry(name: str) -> dict[str, Any]:
    return {
        "endpoint": "https://otel.example.com:4318",
        "protocol": "HTTP",
        "provider": "OTEL_COLLECTOR",
        "types": ["LOGS"],
        "secret": {"name": name, "value": "token"},
    }


async def _world(admin: httpx.AsyncClient, auth: AuthComponents, index: int) -> dict[str, str]:
    """Fresh resources of the default account, named by the path parameters that hold their ids."""
    await register_cluster(admin, capacity=10_000)
    fn = await create_function(admin, name=f"matrix-{index}")
    response = await deploy(admin, fn, spec(1, 2))
    assert response.status_code == 200, response.text
    deployment = response.json()["deployment"]
    instance = next(i for i in await assignments(admin) if i["functionVersionId"] == fn["versionId"])
    shared = {"authorizedParties": [{"ncaId": "matrix-friend"}]}
    for path in (_AUTHZ, _AUTHZ_VERSION):
        response = await admin.post(
            path.format(functionId=fn["id"], functionVersionId=fn["versionId"]), json=shared
        )
        assert response.status_code == 200, response.text
    # scopes the "key with the scope" holds: a key or service account with more is not its to change,
    # rotate or delete
    key, _ = await auth.api_keys.issue("nvcf-default", "matrix-owner", authorizations_for([MANAGE_KEYS]))
    client, _ = await auth.service_accounts.register("nvcf-default", [MANAGE_KEYS])
    nca_id = f"matrix-account-{index}"
    await auth.accounts.ensure(nca_id, nca_id, 10)
    # one registry credential at a time (an account may hold 25): an earlier world's, unless deleted
    held = (await admin.get("/v2/nvcf/registry-credentials")).json()["registryCredentials"]
    if not held:
        response = await admin.post(
            "/v2/nvcf/registry-credentials", json=_registry_credential(f"matrix-{index}")
        )
        assert response.status_code == 200, response.text
        held = [response.json()["registryCredential"]]
    # likewise one telemetry (a successful DELETE removes it)
    telemetries = (await admin.get("/v2/nvcf/telemetries")).json()["telemetries"]
    if not telemetries:
        response = await admin.post("/v2/nvcf/telemetries", json=_telemetry(f"matrix-{index}"))
        assert response.status_code == 200, response.text
        telemetries = [response.json()["telemetry"]]
    return {
        "telemetryId": telemetries[0]["telemetryId"],
        "registryCredentialId": held[0]["registryCredentialId"],
        "functionId": fn["id"],
        "functionVersionId": fn["versionId"],
        "versionId": fn["versionId"],
        "deploymentId": deployment["deploymentId"],
        "gpuSpecificationId": deployment["deploymentSpecifications"][0]["gpuSpecificationId"],
        "instanceId": instance["instanceId"],
        "key_id": key.key_id,
        "client_id": client.client_id,
        "clientId": client.client_id,
        "nca_id": nca_id,
        "clusterName": "local",
    }


def _operations(app: Any) -> list[tuple[str, str, list[str] | None, bool]]:
    """(method, path, scopes or None if public, has a request body) for every operation."""
    operations = []
    for path, items in app.openapi()["paths"].items():
        for method, operation in items.items():
            security = operation.get("security")
            scopes = (
                None
                if not security
                else [s for requirement in security for s in requirement.get("fnplane", [])]
            )
            operations.append((method.upper(), path, scopes, "requestBody" in operation))
    return operations


async def test_every_operation_answers_each_caller_as_issue_2_says(
    control_app: Any, admin_client: httpx.AsyncClient, auth: AuthComponents, make_client: Any
) -> None:
    operations = _operations(control_app)
    assert len(operations) > 20
    expired_jwt = (await make_client(kind="jwt", expires_in_s=-60)).credential
    keys: dict[tuple[str, frozenset[str]], str] = {}

    async def key(nca_id: str, scopes: frozenset[str]) -> str:
        if (nca_id, scopes) not in keys:
            keys[(nca_id, scopes)] = (await make_client(scopes, nca_id=nca_id)).credential
        return keys[(nca_id, scopes)]

    failures: list[str] = []
    transport = httpx.ASGITransport(app=control_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for index, (method, template, declared, has_body) in enumerate(operations):
            name = f"{method} {template}"
            if (method, template) in PUBLIC:
                continue
            scopes = SELF_AUTHENTICATED.get((method, template), declared)
            if scopes is None:
                failures.append(f"{name}: declares no scope (use requires(...) or list it as PUBLIC)")
                continue
            world = await _world(admin_client, auth, index)
            params = re.findall(r"{(\w+)}", template)
            unknown = [p for p in params if p not in world]
            if unknown:
                failures.append(
                    f"{name}: the matrix does not know path parameter(s) {unknown}; add them to _world"
                )
                continue
            path = template.format(**world)
            body = _bodies(world).get((method, template), {} if has_body else None)

            async def call(
                bearer: str | None, *, path: str = path, body: Any = body, method: str = method
            ) -> int:
                headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
                response = await http.request(method, path, json=body, headers=headers)
                return response.status_code

            cases: list[tuple[str, str | None, Callable[[int], bool], str]] = [
                ("no token", None, lambda s: s == 401, "401"),
                ("malformed token", "not-a-token", lambda s: s == 401, "401"),
                ("expired JWT", expired_jwt, lambda s: s == 401, "401"),
            ]
            if scopes:
                without = await key("nvcf-default", frozenset(ADMIN_SCOPES - set(scopes)))
                cases.append(("key without the scope", without, lambda s: s == 403, "403"))
            resource_params = [p for p in params if p in RESOURCE_PARAMS]
            tenant_scopes = frozenset(scopes) - {CLUSTER_MANAGEMENT}
            if resource_params and (tenant_scopes or not scopes):
                if has_body and (method, template) not in _bodies(world):
                    failures.append(f"{name}: add a valid sample body to _bodies for the other-account case")
                else:
                    other = await key("matrix-other", tenant_scopes)
                    cases.append(("key of another account", other, lambda s: s == 404, "404"))
            # last: a successful DELETE would change the world for the cases after it
            with_scope = await key("nvcf-default", frozenset(scopes))
            cases.append(
                (
                    "key with the scope",
                    with_scope,
                    lambda s: s not in (401, 403, 404) and (s < 500 or s == 503),
                    "not 401/403/404/5xx",
                )
            )
            for label, bearer, ok, expected in cases:
                status = await call(bearer)
                if not ok(status):
                    failures.append(f"{name} [{label}]: got {status}, expected {expected}")
    assert not failures, "\n".join(failures)
