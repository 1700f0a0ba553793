"""`AsyncClient`: the control API of fnplane (or NVCF) over httpx, HTTP/2 by default.

    async with AsyncClient("http://127.0.0.1:8080", api_key="nvapi-...") as client:
        function = await client.create_function(name="echo", inference_url="/echo", inference_port=8000,
                                                container_args="python3 examples/echo_server.py")
        await client.deploy(function["id"], function["versionId"], gpu="L40S",
                            instance_type="LOCAL.GPU.L40S_1x")
        await client.wait_until_active(function["id"], function["versionId"])
        print(await client.invoke(function["id"], {"hello": "world"}))

Invocation (pexec, submit, status, direct, SSE), assets and gRPC live in `invocation.py`, `assets.py`
and `grpc.py` (mixins of this class); `sync.Client` is the blocking twin. Answers are the API's own JSON
shapes, unwrapped from their envelope (`{"function": {...}}` -> the inner dict).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from fnplane.sdk.assets import AssetMethods
from fnplane.sdk.connection import Connection, resolve_api_key, resolve_base_url
from fnplane.sdk.credentials import Credentials
from fnplane.sdk.errors import DeploymentFailedError, error_for, not_found_error, timeout_error
from fnplane.sdk.grpc import GrpcMethods
from fnplane.sdk.invocation import InvocationMethods
from fnplane.sdk.keepalive import Keepalive
from fnplane.shared.errors import FnplaneError

# the audience and product of an API key's policy (NVCF's)
KEY_AUDIENCE = "nvidia-cloud-functions-ncp-service-id-aketm"
KEY_PRODUCT = "nv-cloud-functions"
ALL_FUNCTIONS = [{"id": "*", "type": "account-functions"}]
# how often wait_until_active / wait_for_status look at the version
STATUS_POLL_INTERVAL_S = 1.0

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _key_value_list(value: Any, key: str) -> Any:
    """{"A": "1"} -> [{key: "A", "value": "1"}]; a list passes as it is."""
    if isinstance(value, dict):
        return [{key: k, "value": v} for k, v in value.items()]
    return value


def function_body(fields: dict[str, Any]) -> dict[str, Any]:
    """A function (or version) registration body from snake_case or camelCase keywords."""
    body = {_camel(name): value for name, value in fields.items() if value is not None}
    if "containerEnvironment" in body:
        body["containerEnvironment"] = _key_value_list(body["containerEnvironment"], "key")
    if "secrets" in body:
        body["secrets"] = _key_value_list(body["secrets"], "name")
    return body


def parse_duration(value: timedelta | str) -> timedelta:
    """`"30d"`, `"12h"`, `"90m"`, `"45s"` (or a timedelta) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30d, 12h, 90m)")
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


class AsyncClient(InvocationMethods, AssetMethods, GrpcMethods):
    """An asyncio client of one fnplane (or NVCF) endpoint (see the module docstring).

    `base_url`: else $FNPLANE_URL, else http://127.0.0.1:8080. `api_key`: else $FNPLANE_API_KEY, else
    $NVCF_API_KEY; or `client_id`/`client_secret` of a service account, whose token (for `scopes`) is
    fetched from `POST /token`, cached and fetched again before it expires. `keepalive`: True or a
    `Keepalive` sends HTTP/2 PINGs on idle connections. `retries`: how often a retryable call is
    tried again. `http_client`: an httpx.AsyncClient of your own (its base URL is not used).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        scopes: list[str] | None = None,
        grpc_target: str | None = None,
        timeout_s: float = 30.0,
        http2: bool = True,
        keepalive: Keepalive | bool = False,
        retries: int = 3,
        verify: bool | str = True,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        if client_id and client_secret:
            account = (client_id, client_secret, scopes)
            credentials = Credentials(None, lambda: self.token(*account))
        else:
            credentials = Credentials(resolve_api_key(api_key))
        self._conn = Connection(
            self.base_url,
            credentials,
            timeout_s=timeout_s,
            http2=http2,
            keepalive=keepalive,
            retries=retries,
            verify=verify,
            http_client=http_client,
        )
        self._grpc_target = grpc_target
        self._verify = verify

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._conn.aclose()

    @property
    def credentials(self) -> Credentials:
        return self._conn.credentials

    # -- platform -------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """`GET /health`: raises UnavailableError (with the failing checks) when not ready."""
        return dict(await self._conn.json("GET", "/health"))

    async def supported_gpus(self) -> list[dict[str, Any]]:
        return list(await self._conn.json("GET", "/v2/nvcf/supportedGpus"))

    async def cluster_groups(self) -> list[dict[str, Any]]:
        return list((await self._conn.json("GET", "/v2/nvcf/clusterGroups"))["clusterGroups"])

    # -- functions ------------------------------------------------------------------------------------

    async def create_function(self, **fields: Any) -> dict[str, Any]:
        """Register a function (a new version, INACTIVE); keywords snake_case or camelCase
        (`inference_url` or `inferenceUrl`); `container_environment` and `secrets` may be dicts."""
        document = await self._conn.json("POST", "/v2/nvcf/functions", json=function_body(fields))
        return dict(document["function"])

    async def create_version(self, function_id: str, **fields: Any) -> dict[str, Any]:
        """A new version of a function (same keywords as `create_function`)."""
        path = f"/v2/nvcf/functions/{function_id}/versions"
        return dict((await self._conn.json("POST", path, json=function_body(fields)))["function"])

    async def list_functions(self, visibility: str | None = None) -> list[dict[str, Any]]:
        params = {"visibility": visibility} if visibility else None
        return list((await self._conn.json("GET", "/v2/nvcf/functions", params=params))["functions"])

    async def list_function_ids(self) -> list[str]:
        return list((await self._conn.json("GET", "/v2/nvcf/functions/ids"))["functionIds"])

    async def list_versions(self, function_id: str) -> list[dict[str, Any]]:
        path = f"/v2/nvcf/functions/{function_id}/versions"
        return list((await self._conn.json("GET", path))["functions"])

    async def get_version(self, function_id: str, version_id: str) -> dict[str, Any]:
        path = f"/v2/nvcf/functions/{function_id}/versions/{version_id}"
        return dict((await self._conn.json("GET", path))["function"])

    async def update_function(
        self,
        function_id: str,
        version_id: str,
        *,
        tags: list[str] | None = None,
        rate_limit: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Change what a version allows to change (NVCF's UpdateFunctionRequest): `tags` (replaced
        whole; [] clears them) and `rate_limit` (`{"rateLimit": "100-S", ...}`). Returns the version."""
        body: dict[str, Any] = {}
        if tags is not None:
            body["tags"] = tags
        if rate_limit is not None:
            body["rateLimit"] = rate_limit
        path = f"/v2/nvcf/functions/{function_id}/versions/{version_id}"
        return dict((await self._conn.json("PUT", path, json=body))["function"])

    async def delete_version(self, function_id: str, version_id: str) -> None:
        await self._conn.send("DELETE", f"/v2/nvcf/functions/{function_id}/versions/{version_id}")

    async def update_secrets(self, function_id: str, version_id: str, secrets: dict[str, str]) -> None:
        """Merge `secrets` (name -> value) into the version's secrets."""
        path = f"/v2/nvcf/secrets/functions/{function_id}/versions/{version_id}"
        body = {"secrets": [{"name": k, "value": v} for k, v in secrets.items()]}
        await self._conn.send("PUT", path, json=body)

    # -- deployments ----------------------------------------------------------------------------------

    @staticmethod
    def _deployment_path(function_id: str, version_id: str) -> str:
        return f"/v2/nvcf/deployments/functions/{function_id}/versions/{version_id}"

    async def deploy(
        self,
        function_id: str,
        version_id: str,
        *,
        gpu: str,
        instance_type: str,
        min_instances: int = 1,
        max_instances: int = 1,
        max_request_concurrency: int | None = None,
        **spec_extra: Any,
    ) -> dict[str, Any]:
        """Deploy a version on one GPU/instance type; `spec_extra` adds fields to the deployment
        specification (snake_case or camelCase, e.g. `clusters=[...]`). Returns the deployment."""
        spec: dict[str, Any] = {
            "gpu": gpu,
            "instanceType": instance_type,
            "minInstances": min_instances,
            "maxInstances": max_instances,
        }
        if max_request_concurrency is not None:
            spec["maxRequestConcurrency"] = max_request_concurrency
        spec.update({_camel(k): v for k, v in spec_extra.items() if v is not None})
        body = {"deploymentSpecifications": [spec]}
        path = self._deployment_path(function_id, version_id)
        return dict((await self._conn.json("POST", path, json=body))["deployment"])

    async def get_deployment(self, function_id: str, version_id: str) -> dict[str, Any]:
        path = self._deployment_path(function_id, version_id)
        return dict((await self._conn.json("GET", path))["deployment"])

    async def update_deployment(
        self,
        function_id: str,
        version_id: str,
        *,
        gpu: str,
        instance_type: str,
        min_instances: int | None = None,
        max_instances: int | None = None,
        max_request_concurrency: int | None = None,
    ) -> dict[str, Any]:
        """Change the instance counts (or concurrency) of a deployment's `gpu`/`instance_type`
        specification; what is left None keeps its current value."""
        current = await self.get_deployment(function_id, version_id)
        specs = [dict(s) for s in current.get("deploymentSpecifications", [])]
        # the API takes GPU and instance type names in any case, and so does the selector
        spec = next(
            (
                s
                for s in specs
                if str(s.get("gpu", "")).lower() == gpu.strip().lower()
                and str(s.get("instanceType", "")).lower() == instance_type.strip().lower()
            ),
            None,
        )
        if spec is None:
            # the PUT cannot add a specification: say which ones there are (it was sent as a new one,
            # and the API's 400 named a field of a specification the caller never wrote)
            known = ", ".join(f"{s.get('gpu')} / {s.get('instanceType')}" for s in specs) or "none"
            raise not_found_error(
                f"the deployment of version {version_id} has no GPU specification {gpu} / {instance_type} "
                f"(it has: {known})"
            )
        for name, value in (
            ("minInstances", min_instances),
            ("maxInstances", max_instances),
            ("maxRequestConcurrency", max_request_concurrency),
        ):
            if value is not None:
                spec[name] = value
        path = self._deployment_path(function_id, version_id)
        body = {"deploymentSpecifications": specs}
        return dict((await self._conn.json("PUT", path, json=body))["deployment"])

    async def undeploy(self, function_id: str, version_id: str, *, graceful: bool = False) -> dict[str, Any]:
        """Delete the deployment; returns the function version (INACTIVE)."""
        params = {"graceful": "true"} if graceful else None
        path = self._deployment_path(function_id, version_id)
        return dict((await self._conn.json("DELETE", path, params=params))["function"])

    async def wait_until_active(
        self,
        function_id: str,
        version_id: str,
        timeout_s: float = 600.0,
        *,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Wait for the version to be ACTIVE and return it; `on_status(version)` is called at each
        change of status. DeploymentFailedError on ERROR, GatewayTimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        last: str | None = None
        while True:
            version = await self.get_version(function_id, version_id)
            status = version.get("status")
            if status != last:
                last = status
                if on_status is not None:
                    on_status(version)
            if status == "ACTIVE":
                return version
            if status == "ERROR":
                reasons = await self._failure_reasons(function_id, version_id)
                detail = f"version {version_id} is ERROR" + (f": {'; '.join(reasons)}" if reasons else "")
                raise DeploymentFailedError(detail, version, reasons)
            if time.monotonic() + STATUS_POLL_INTERVAL_S > deadline:
                raise timeout_error(f"version {version_id} is {status}, not ACTIVE, after {timeout_s:g} s")
            await asyncio.sleep(STATUS_POLL_INTERVAL_S)

    async def _failure_reasons(self, function_id: str, version_id: str) -> list[str]:
        """Why a version failed: the errors of its deployment's healthInfo (the version's own `health`
        is its health-check configuration, not a reason)."""
        try:
            deployment = await self.get_deployment(function_id, version_id)
        except FnplaneError:
            return []
        return [
            str(h["error"])
            for h in deployment.get("healthInfo") or []
            if isinstance(h, dict) and h.get("error")
        ]

    async def wait_for_status(
        self, function_id: str, version_id: str, status: str, *, timeout_s: float = 120.0
    ) -> dict[str, Any]:
        """Wait for the version to reach `status`; GatewayTimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            version = await self.get_version(function_id, version_id)
            if version.get("status") == status:
                return version
            if time.monotonic() + STATUS_POLL_INTERVAL_S / 2 > deadline:
                raise timeout_error(
                    f"version {version_id} is {version.get('status')}, not {status}, after {timeout_s:g} s"
                )
            await asyncio.sleep(STATUS_POLL_INTERVAL_S / 2)

    # -- API keys -------------------------------------------------------------------------------------

    async def create_key(
        self,
        *,
        scopes: list[str],
        expires_in: timedelta | str | None = None,
        description: str | None = None,
        resources: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A new API key of the caller's account (its `value` is shown only in this answer);
        `resources` default to all the account's functions."""
        body: dict[str, Any] = {
            "description": description or "fnplane-sdk",
            "authorizations": {
                "policies": [
                    {
                        "aud": KEY_AUDIENCE,
                        "product": KEY_PRODUCT,
                        "resources": resources or ALL_FUNCTIONS,
                        "scopes": scopes,
                    }
                ]
            },
        }
        if expires_in is not None:
            body["expires_at"] = (datetime.now(UTC) + parse_duration(expires_in)).isoformat()
        return dict(await self._conn.json("POST", "/v1/keys", json=body))

    async def list_keys(self) -> list[dict[str, Any]]:
        return list((await self._conn.json("GET", "/v1/keys"))["keys"])

    async def get_key(self, key_id: str) -> dict[str, Any]:
        return dict(await self._conn.json("GET", f"/v1/keys/{key_id}"))

    async def revoke_key(self, key_id: str) -> None:
        await self._conn.send("DELETE", f"/v1/keys/{key_id}")

    # -- service accounts -----------------------------------------------------------------------------

    async def create_service_account(self, name: str, scopes: list[str]) -> dict[str, Any]:
        """The answer holds `clientId` and `clientSecret` (shown only here)."""
        body = {"name": name, "scopes": scopes}
        return dict((await self._conn.json("POST", "/v2/nvcf/service-accounts", json=body))["serviceAccount"])

    async def list_service_accounts(self) -> list[dict[str, Any]]:
        return list((await self._conn.json("GET", "/v2/nvcf/service-accounts"))["serviceAccounts"])

    async def get_service_account(self, client_id: str) -> dict[str, Any]:
        path = f"/v2/nvcf/service-accounts/{client_id}"
        return dict((await self._conn.json("GET", path))["serviceAccount"])

    async def rotate_service_account_secret(self, client_id: str) -> dict[str, Any]:
        """A new `clientSecret`; tokens issued before are refused from now on."""
        path = f"/v2/nvcf/service-accounts/{client_id}/rotate-secret"
        return dict((await self._conn.json("POST", path))["serviceAccount"])

    async def delete_service_account(self, client_id: str) -> None:
        await self._conn.send("DELETE", f"/v2/nvcf/service-accounts/{client_id}")

    async def token(
        self, client_id: str, client_secret: str, scopes: list[str] | None = None
    ) -> dict[str, Any]:
        """`POST /token` (client credentials): {access_token, token_type, expires_in, scope}."""
        form = {"grant_type": "client_credentials"}
        if scopes:
            form["scope"] = " ".join(scopes)
        response = await self._conn.http.post(
            f"{self.base_url}/token", data=form, auth=(client_id, client_secret)
        )
        if response.status_code >= 400:
            raise error_for(response)
        return dict(response.json())

    # -- queues and logs ------------------------------------------------------------------------------

    async def queue(self, function_id: str, version_id: str | None = None) -> dict[str, Any]:
        """{"functionId", "queues": [...]}: the requests waiting per version."""
        path = f"/v2/nvcf/queues/functions/{function_id}"
        if version_id:
            path += f"/versions/{version_id}"
        return dict(await self._conn.json("GET", path))

    async def queue_position(self, request_id: str) -> dict[str, Any]:
        """{"functionId", "functionVersionId", "positionInQueue"} (0 once a worker has it)."""
        return dict(await self._conn.json("GET", f"/v2/nvcf/queues/{request_id}/position"))

    @staticmethod
    def _logs_path(function_id: str, version_id: str, instance_id: str) -> str:
        return f"/v2/nvcf/functions/{function_id}/versions/{version_id}/instances/{instance_id}/logs"

    async def instance_logs(
        self, function_id: str, version_id: str, instance_id: str, *, tail: int = 100
    ) -> str:
        """The last `tail` lines an instance wrote."""
        path = self._logs_path(function_id, version_id, instance_id)
        return (await self._conn.send("GET", path, params={"tail": tail})).text

    async def follow_logs(
        self, function_id: str, version_id: str, instance_id: str, *, tail: int = 100
    ) -> AsyncIterator[str]:
        """The last `tail` lines, then each new one as the instance writes it (until it stops)."""
        path = self._logs_path(function_id, version_id, instance_id)
        params = {"tail": tail, "follow": "true"}
        async with self._conn.stream(
            "GET", path, params=params, timeout=self._conn.timeout(None)
        ) as response:
            async for line in response.aiter_lines():
                yield line
