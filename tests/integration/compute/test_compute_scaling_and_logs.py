"""Autoscaler cycles and instance-log streaming against the real platform."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from compute_stack import PY, Platform, create_function, deploy, platform, wait_for, wait_status
from prometheus_client import REGISTRY

from fnplane.control.autoscaler import AutoscalerSettings
from polling import get_version


@pytest.fixture
async def scaling_stack(tmp_path: Path) -> AsyncIterator[Platform]:
    """The platform with an autoscaler of 1 s samples and a 1 s idle window, whose cycles the test runs."""
    settings = AutoscalerSettings(
        scaling_interval_s=3600, sample_step_s=1.0, lookback_s=3.0, idle_window_s=1.0
    )
    async with platform(tmp_path, autoscaler_settings=settings) as running:
        yield running


async def test_autoscaler_scales_up_under_load_and_down_to_zero_when_idle(scaling_stack: Platform) -> None:
    stack = scaling_stack
    # the test plays the workers' load (no gateway here); the agent's own idle reports would dilute it
    agent = await stack.start_agent(metrics_interval_s=3600)
    fn = await create_function(stack.client, f"{PY} examples/echo_server.py")
    assert (await deploy(stack.client, fn, min_instances=0, max_instances=3)).status_code == 200
    await wait_status(stack.client, fn, "ACTIVE")
    # the app's autoscaler receives the metrics route and the wake notes; the test runs its cycles
    autoscaler = stack.app.components.autoscaler
    # nothing runs and nobody asked: no decision
    assert await autoscaler.run_once() == {}
    wake = await stack.client.post(f"/v1/fnplane/versions/{fn['versionId']}/wake")
    assert wake.json()["requested"] is True
    await wait_for(lambda: _running(stack, fn, 1))

    # the workers report 95 % busy through the agent API: 1 -> 2 (ceil 1.2)
    metrics = {
        "intervalSeconds": 1.0,
        "versions": [
            {"functionVersionId": fn["versionId"], "instances": 1, "busyFraction": 0.95, "invoked": True}
        ],
    }
    response = await stack.client.post("/v1/fnplane/clusters/local/metrics", json=metrics)
    assert response.status_code == 204
    ups = _sample("fnplane_autoscaler_decisions_total", direction="up")
    assert await autoscaler.run_once() == {fn["versionId"]: 2}
    # the decision as NVCF's autoscaler gauges show it, and one more decision up
    version = {"function_id": fn["id"], "function_version_id": fn["versionId"]}
    assert _sample("nvcf_autoscaler_scaling_current_instances", **version) == 1
    assert _sample("nvcf_autoscaler_scaling_desired_instances", **version) == 2
    assert _sample("nvcf_autoscaler_scaling_utilization", **version) == pytest.approx(95.0)
    assert _sample("fnplane_autoscaler_decisions_total", direction="up") == ups + 1
    await wait_for(lambda: _running(stack, fn, 2))
    assert len(agent.supervisors) == 2
    # the busy sample again: on a slow host the second instance's start alone outlasts the 3 s lookback
    await stack.client.post("/v1/fnplane/clusters/local/metrics", json=metrics)

    # idle (beyond the 1 s idle window) and 0 % busy
    await asyncio.sleep(1.2)
    idle = {
        **metrics,
        "versions": [{**metrics["versions"][0], "instances": 2, "busyFraction": 0.0, "invoked": False}],
    }
    await stack.client.post("/v1/fnplane/clusters/local/metrics", json=idle)
    # the newest sample is low (x0.8), but the lookback still averages the busy one: not yet zero
    assert await autoscaler.run_once() == {fn["versionId"]: 1}
    await asyncio.sleep(2.5)
    await stack.client.post("/v1/fnplane/clusters/local/metrics", json=idle)
    downs = _sample("fnplane_autoscaler_decisions_total", direction="down")
    assert await autoscaler.run_once() == {fn["versionId"]: 0}
    assert _sample("nvcf_autoscaler_scaling_desired_instances", **version) == 0
    assert _sample("fnplane_autoscaler_decisions_total", direction="down") == downs + 1

    async def no_process() -> bool:
        return not stack.leftovers()

    await wait_for(no_process)
    assert (await get_version(stack.client, fn))["status"] == "ACTIVE"


def _sample(name: str, **labels: str) -> float:
    """A sample of this process's metrics registry (the platform runs in the test process)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _running(stack: Platform, fn: dict, count: int) -> bool:
    instances = (await get_version(stack.client, fn)).get("activeInstances") or []
    return sum(i.get("instanceStatus") == "RUNNING" for i in instances) == count


async def test_follow_streams_new_lines(stack: Platform) -> None:
    agent = await stack.start_agent()
    fn = await create_function(stack.client, f"{PY} examples/echo_server.py")
    assert (await deploy(stack.client, fn)).status_code == 200
    active = await wait_status(stack.client, fn, "ACTIVE")
    instance_id = active["activeInstances"][0]["instanceId"]
    port = agent.supervisors[instance_id].port
    path = f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}/instances/{instance_id}/logs"
    async with stack.client.stream("GET", path, params={"tail": 1, "follow": "true"}) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        first = await asyncio.wait_for(anext(lines), 10)
        assert first
        # the echo server logs every request it serves: a new line must arrive on the open stream
        async with httpx.AsyncClient() as direct:
            await direct.post(f"http://127.0.0.1:{port}/followed", json={"x": 1})

        async def until_request_line() -> str:
            async for line in lines:
                if "POST /followed" in line:
                    return line
            return ""

        assert "POST /followed" in await asyncio.wait_for(until_request_line(), 10)

    missing = await stack.client.get(path.replace(instance_id, "00000000-0000-0000-0000-000000000000"))
    assert missing.status_code == 404
    bad = await stack.client.get(path, params={"tail": -1})
    assert bad.status_code == 400


async def test_following_an_instance_that_wrote_nothing_waits_and_ends_with_the_client(
    stack: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await stack.start_agent()
    # inv_function logs nothing, not even its requests, until /print asks it to
    fn = await create_function(stack.client, f"{PY} examples/inv_function.py $(PORT)")
    assert (await deploy(stack.client, fn, max_instances=1)).status_code == 200
    active = await wait_status(stack.client, fn, "ACTIVE")
    instance_id = active["activeInstances"][0]["instanceId"]
    port = agent.supervisors[instance_id].port
    log = agent.backend._log_for(instance_id)  # type: ignore[union-attr]
    assert log is not None and not log.listeners

    async def following() -> bool:
        return bool(log.listeners)

    async def stopped() -> bool:
        # the log has no reader left and the agent's task that served the follow has ended
        return not log.listeners and not agent._side_tasks

    path = f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}/instances/{instance_id}/logs"
    assert (await stack.client.get(path)).text == ""
    # answered at once, with no line yet (it was a 503 once the agent's 5 s for a first line ran out)
    async with stack.client.stream("GET", path, params={"follow": "true"}) as response:
        assert response.status_code == 200
        await wait_for(following, timeout_s=10)  # the agent follows the log
        async with httpx.AsyncClient() as direct:
            printed = await direct.post(f"http://127.0.0.1:{port}/print", params={"line": "later line"})
            assert printed.status_code == 200
        assert await asyncio.wait_for(anext(response.aiter_lines()), 10) == "later line"
    # the client went away: the agent stops following (a follow left running would hold on for an hour)
    await wait_for(stopped, timeout_s=10)
    gc.collect()  # a task that failed says so when it is collected ("Task exception was never retrieved")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
