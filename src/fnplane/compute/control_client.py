"""The agent's HTTP client for the control plane (contract: shared/models/compute.py)."""

from __future__ import annotations

import httpx

from fnplane.shared.control_urls import ControlUrls
from fnplane.shared.models.compute import (
    ClusterRecord,
    ClusterRegistration,
    InstanceAssignments,
    InstanceReport,
    WorkerMetrics,
)


class ControlPlaneError(Exception):
    """The control plane did not accept a call (network error or non-2xx status)."""


class ControlPlaneClient:
    """`base_url`: the control API, or its replicas' URLs comma-separated (shared/control_urls.py)."""

    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._urls = ControlUrls(base_url)
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout_s)

    async def _call(self, method: str, path: str, body: str | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if body else None
        for base in self._urls.in_order():
            try:
                response = await self._http.request(method, f"{base}{path}", content=body, headers=headers)
                break
            except httpx.TransportError as error:  # this replica is down or cut off: the next one
                self._urls.unreachable(base)
                failure = error
            except httpx.HTTPError as error:
                raise ControlPlaneError(f"{method} {path}: {type(error).__name__}: {error}") from error
        else:
            raise ControlPlaneError(f"{method} {path}: {type(failure).__name__}: {failure}") from failure
        if response.status_code >= 300:
            raise ControlPlaneError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    async def register(self, name: str, registration: ClusterRegistration) -> ClusterRecord:
        response = await self._call(
            "PUT", f"/v1/fnplane/clusters/{name}", registration.model_dump_json(by_alias=True)
        )
        return ClusterRecord.model_validate_json(response.content)

    async def assignments(self, name: str) -> InstanceAssignments:
        response = await self._call("GET", f"/v1/fnplane/clusters/{name}/instances")
        return InstanceAssignments.model_validate_json(response.content)

    async def report(self, instance_id: str, report: InstanceReport) -> None:
        await self._call(
            "POST",
            f"/v1/fnplane/instances/{instance_id}/reports",
            report.model_dump_json(by_alias=True, exclude_none=True),
        )

    async def metrics(self, name: str, metrics: WorkerMetrics) -> None:
        await self._call(
            "POST", f"/v1/fnplane/clusters/{name}/metrics", metrics.model_dump_json(by_alias=True)
        )

    async def aclose(self) -> None:
        await self._http.aclose()
