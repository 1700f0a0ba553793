"""`AsyncClient` and `Client`: the control API and pexec invocation of fnplane (or NVCF) over httpx.

    async with AsyncClient("http://127.0.0.1:8080", api_key="nvapi-...") as client:
        function = await client.create_function(name="echo", inference_url="/echo", inference_port=8000,
                                                container_args="python3 examples/echo_server.py")
        await client.deploy(function["id"], function["versionId"], gpu="L40S",
                            instance_type="LOCAL.GPU.L40S_1x")
        await client.wait_for_status(function["id"], function["versionId"], "ACTIVE")
        response = await client.invoke(function["id"], {"hello": "world"})

Every error answer (`application/problem+json`) becomes the matching `fnplane.shared.errors` class
(`NotFoundError` for 404, ...) through `error_for`, which reads the platform's one table
(`fnplane.shared.problems`) backwards; its `status` and `problem` attributes keep the HTTP details.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx

from fnplane.shared import errors
from fnplane.shared.problems import error_from_problem

DEFAULT_BASE_URL = "http://127.0.0.1:8080"


class ApiError(errors.FnplaneError):
    """An error status without a more specific class (e.g. 500)."""


def error_for(response: httpx.Response) -> errors.FnplaneError:
    """The FnplaneError for an error response, carrying `status` and the problem document."""
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    error = error_from_problem(
        response.status_code,
        problem,
        retry_after=response.headers.get("retry-after"),
        default=ApiError,
        fallback_detail=response.reason_phrase,
    )
    error.status = response.status_code  # type: ignore[attr-defined]
    error.problem = problem  # type: ignore[attr-defined]
    return error


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class AsyncClient:
    """An asyncio client of one fnplane (or NVCF) endpoint.

    `api_key` defaults to $FNPLANE_API_KEY, then $NVCF_API_KEY; `http2=True` speaks h2c / h2.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        http2: bool = False,
    ) -> None:
        key = api_key or os.environ.get("FNPLANE_API_KEY") or os.environ.get("NVCF_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, http2=http2
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_for(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        return response.json() if response.content else None

    # -- platform -------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """`GET /health`: raises UnavailableError (with the failing checks) when not ready."""
        return dict(await self._json("GET", "/health"))

    # -- functions ------------------------------------------------------------------------------------

    async def create_function(self, **fields: Any) -> dict[str, Any]:
        """Register a function; keyword names may be snake_case (`inference_url`) or camelCase."""
        body = {_camel(name): value for name, value in fields.items() if value is not None}
        return dict((await self._json("POST", "/v2/nvcf/functions", json=body))["function"])

    async def create_version(self, function_id: str, **fields: Any) -> dict[str, Any]:
        body = {_camel(name): value for name, value in fields.items() if value is not None}
        document = await self._json("POST", f"/v2/nvcf/functions/{function_id}/versions", json=body)
        return dict(document["function"])

    async def list_functions(self, visibility: str | None = None) -> list[dict[str, Any]]:
        params = {"visibility": visibility} if visibility else None
        return list((await self._json("GET", "/v2/nvcf/functions", params=params))["functions"])

    async def get_version(self, function_id: str, version_id: str) -> dict[str, Any]:
        path = f"/v2/nvcf/functions/{function_id}/versions/{version_id}"
        return dict((await self._json("GET", path))["function"])

    async def delete_version(self, function_id: str, version_id: str) -> None:
        await self._request("DELETE", f"/v2/nvcf/functions/{function_id}/versions/{version_id}")

    # -- deployments ----------------------------------------------------------------------------------

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
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "gpu": gpu,
            "instanceType": instance_type,
            "minInstances": min_instances,
            "maxInstances": max_instances,
        }
        if max_request_concurrency is not None:
            spec["maxRequestConcurrency"] = max_request_concurrency
        path = f"/v2/nvcf/deployments/functions/{function_id}/versions/{version_id}"
        return dict((await self._json("POST", path, json={"deploymentSpecifications": [spec]}))["deployment"])

    async def undeploy(self, function_id: str, version_id: str, *, graceful: bool = False) -> dict[str, Any]:
        path = f"/v2/nvcf/deployments/functions/{function_id}/versions/{version_id}"
        params = {"graceful": "true"} if graceful else None
        return dict((await self._json("DELETE", path, params=params))["function"])

    async def wait_for_status(
        self,
        function_id: str,
        version_id: str,
        status: str,
        *,
        timeout_s: float = 120.0,
        interval_s: float = 0.5,
    ) -> dict[str, Any]:
        """Poll the version until it reaches `status`; GatewayTimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            version = await self.get_version(function_id, version_id)
            if version.get("status") == status:
                return version
            if time.monotonic() > deadline:
                raise errors.GatewayTimeoutError(
                    f"version {version_id} is {version.get('status')}, not {status}, after {timeout_s} s"
                )
            await asyncio.sleep(interval_s)

    # -- invocation -----------------------------------------------------------------------------------

    async def invoke(
        self,
        function_id: str,
        body: Any,
        *,
        version_id: str | None = None,
        poll_seconds: int | None = None,
        timeout_s: float = 600.0,
    ) -> httpx.Response:
        """pexec: POST the JSON `body`; a 202 is followed by polling the status endpoint until done.

        Returns the final response (200, or 302 with `Location` for a large result).
        """
        path = f"/v2/nvcf/pexec/functions/{function_id}"
        if version_id:
            path += f"/versions/{version_id}"
        headers = {"NVCF-POLL-SECONDS": str(poll_seconds)} if poll_seconds else None
        deadline = time.monotonic() + timeout_s
        response = await self._request("POST", path, json=body, headers=headers)
        while response.status_code == 202:
            if time.monotonic() > deadline:
                raise errors.GatewayTimeoutError(
                    f"request {response.headers.get('nvcf-reqid')} is still running"
                )
            request_id = response.headers["nvcf-reqid"]
            response = await self._request("GET", f"/v2/nvcf/pexec/status/{request_id}", headers=headers)
        return response

    # -- service accounts -----------------------------------------------------------------------------

    async def create_service_account(self, name: str, scopes: list[str]) -> dict[str, Any]:
        """The answer holds `clientId` and `clientSecret` (shown only here)."""
        document = await self._json(
            "POST", "/v2/nvcf/service-accounts", json={"name": name, "scopes": scopes}
        )
        return dict(document["serviceAccount"])

    async def token(self, client_id: str, client_secret: str, scopes: list[str] | None = None) -> str:
        """An access token (JWT) by OAuth2 client credentials."""
        form = {"grant_type": "client_credentials"}
        if scopes:
            form["scope"] = " ".join(scopes)
        response = await self._request("POST", "/token", data=form, auth=(client_id, client_secret))
        return str(response.json()["access_token"])


class Client:
    """The blocking twin of `AsyncClient` (same methods), for scripts and notebooks."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        http2: bool = False,
    ) -> None:
        self._runner = asyncio.Runner()
        self._async = self._runner.run(_make(base_url, api_key, timeout_s, http2))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._async.aclose())
        self._runner.close()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._async, name)
        if not callable(method) or name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(method(*args, **kwargs))

        call.__doc__ = method.__doc__
        return call


async def _make(base_url: str, api_key: str | None, timeout_s: float, http2: bool) -> AsyncClient:
    # created inside the runner's loop, so httpx binds its pool to that loop
    return AsyncClient(base_url, api_key, timeout_s=timeout_s, http2=http2)
