"""Waiting for the real system to reach a state: shared by the control and compute integration tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest


async def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval_s)
    pytest.fail(f"condition not met within {timeout_s} s (last value: {last!r})")


async def get_version(client: httpx.AsyncClient, fn: dict[str, Any]) -> dict[str, Any]:
    """The function version `fn` (a create response's `function`) as GET returns it now."""
    response = await client.get(f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}")
    assert response.status_code == 200, response.text
    version: dict[str, Any] = response.json()["function"]
    return version


async def wait_status(
    client: httpx.AsyncClient, fn: dict[str, Any], status: str, timeout_s: float, interval_s: float = 0.05
) -> dict[str, Any]:
    """Wait until the version has `status`, and return it; fail naming the status it has instead."""

    async def check() -> dict[str, Any] | None:
        current = await get_version(client, fn)
        return current if current["status"] == status else None

    try:
        reached: dict[str, Any] = await wait_for(check, timeout_s, interval_s)
    except pytest.fail.Exception:
        pytest.fail(f"status {status} not reached within {timeout_s} s: {await get_version(client, fn)}")
    return reached
