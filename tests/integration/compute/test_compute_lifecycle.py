"""The whole lifecycle with the real control plane, real nats-server, real agents and real processes."""

from __future__ import annotations

import os
import signal

import httpx
import psutil
from compute_stack import PY, Platform, create_function, deploy, started_processes, wait_for, wait_status

from fnplane.compute.backends.processes import INSTANCE_MARKER, marked_processes
from polling import get_version


async def _pid(port: int) -> int | None:
    """The pid the function reports (inside a sandbox: its pid in its own PID namespace)."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return int((await client.get(f"http://127.0.0.1:{port}/pid")).json()["pid"])
    except httpx.HTTPError:
        return None


def _function_pid(agent_id: str, instance_id: str) -> int | None:
    """The host pid of the instance's function process (the outer bwrap when sandboxed): the one that
    carries the agent's markers."""
    found = started_processes(agent_id, instance_id, role="function")
    return found[0].pid if len(found) == 1 else None


async def test_deploy_runs_listens_shows_logs_and_undeploy_leaves_nothing(db_stack: Platform) -> None:
    # on SQLite and on the real PostgreSQL
    stack = db_stack
    agent = await stack.start_agent()
    fn = await create_function(
        stack.client, f"{PY} examples/echo_server.py --unused-flag=$(NVCF_FUNCTION_NAME)"
    )
    response = await deploy(stack.client, fn)
    assert response.status_code == 200, response.text
    active = await wait_status(stack.client, fn, "ACTIVE")
    [instance] = active["activeInstances"]
    instance_id = instance["instanceId"]
    supervisor = agent.supervisors[instance_id]
    assert supervisor.port is not None
    assert await _pid(supervisor.port) is not None
    pid = _function_pid(agent.agent_id, instance_id)
    assert pid is not None
    marked = psutil.Process(pid)
    assert marked.environ()[INSTANCE_MARKER] == instance_id
    # the function's own environment is its command's (sandboxed: bwrap's carries only the markers)
    family = [marked, *marked.children(recursive=True)]
    [command] = [p for p in family if p.name() != "bwrap" and "echo_server.py" in " ".join(p.cmdline())]
    environ = command.environ()
    assert environ["NVCF_FUNCTION_ID"] == fn["id"] and environ["INFERENCE_PORT"] == str(supervisor.port)

    logs = await stack.client.get(
        f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}/instances/{instance_id}/logs",
        params={"tail": 1000},  # the whole log: health checks may add lines after the first
    )
    assert logs.status_code == 200, logs.text
    assert f"listening on 127.0.0.1:{supervisor.port}" in logs.text

    undeploy = await stack.client.delete(
        f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    )
    assert undeploy.status_code == 200, undeploy.text
    assert undeploy.json()["function"]["status"] == "INACTIVE"

    async def nothing_left() -> bool:
        return not stack.leftovers()

    await wait_for(nothing_left)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_kill_dash_nine_is_replaced_and_active_again(db_stack: Platform) -> None:
    stack = db_stack
    agent = await stack.start_agent()
    fn = await create_function(stack.client, f"{PY} examples/echo_server.py")
    assert (await deploy(stack.client, fn)).status_code == 200
    active = await wait_status(stack.client, fn, "ACTIVE")
    instance_id = active["activeInstances"][0]["instanceId"]
    port = agent.supervisors[instance_id].port
    assert port is not None
    first = _function_pid(agent.agent_id, instance_id)
    assert first is not None and await _pid(port) is not None
    os.kill(first, signal.SIGKILL)

    async def serving_again() -> int | None:
        pid = _function_pid(agent.agent_id, instance_id)
        return pid if pid not in (None, first) and await _pid(port) is not None else None

    second = await wait_for(serving_again)
    assert second != first
    await wait_status(stack.client, fn, "ACTIVE")


async def test_exit_at_once_is_error_with_stderr_in_health_info(stack: Platform) -> None:
    await stack.start_agent()
    fn = await create_function(stack.client, f"{PY} examples/crash_server.py")
    assert (await deploy(stack.client, fn)).status_code == 200
    await wait_status(stack.client, fn, "ERROR", timeout_s=30)
    response = await stack.client.get(f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}")
    assert response.status_code == 200, response.text
    health = response.json()["deployment"].get("healthInfo") or []
    assert any("CUDA_ERROR_NO_DEVICE" in (entry.get("error") or "") for entry in health), health

    async def nothing_left() -> bool:
        return not stack.leftovers()

    await wait_for(nothing_left)


async def test_never_healthy_is_failed_after_the_startup_timeout_and_shown_in_health_info(
    stack: Platform,
) -> None:
    agent = await stack.start_agent(startup_timeout_s=1.5)
    fn = await create_function(stack.client, f"{PY} examples/never_healthy_server.py")
    assert (await deploy(stack.client, fn, min_instances=1, max_instances=1)).status_code == 200
    deployment_url = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"

    async def failed_entries() -> list[dict] | None:
        response = await stack.client.get(deployment_url)
        assert response.status_code == 200, response.text
        return response.json()["deployment"].get("healthInfo") or None

    health = await wait_for(failed_entries, timeout_s=30)
    entry = health[0]
    assert entry["gpu"] == "L40S" and entry["instanceType"] == "LOCAL.GPU.L40S_1x"
    # the cause, the supervisor's sentence naming the timeout, and the function's own stderr tail
    assert entry["error"].startswith("degraded-worker: ")
    assert "did not pass its health check within 1.5s" in entry["error"]
    assert "model weights missing" in entry["error"]
    failed_id = entry["icmsRequestId"]
    # the failed instance is no longer listed as active, and nothing of it runs any more
    listed = (await get_version(stack.client, fn)).get("activeInstances") or []
    assert failed_id not in [i["instanceId"] for i in listed]

    async def failed_instance_gone() -> bool:
        return not [p for p, iid in marked_processes(agent.agent_id) if iid == failed_id]

    await wait_for(failed_instance_gone)
    # every instance of the version fails the same way: the version is ERROR, not DEPLOYING forever
    await wait_status(stack.client, fn, "ERROR", timeout_s=30)


async def test_capacity_exceeded_is_refused(stack: Platform) -> None:
    await stack.start_agent(capacity=2)
    fn = await create_function(stack.client, f"{PY} examples/echo_server.py")
    response = await deploy(stack.client, fn, min_instances=3, max_instances=3)
    assert response.status_code == 400
    assert "no available clusters" in response.json()["detail"].lower()
    assert (await get_version(stack.client, fn))["status"] == "INACTIVE"


async def test_two_agents_share_one_control_plane(stack: Platform) -> None:
    east = await stack.start_agent("east", capacity=1)
    west = await stack.start_agent("west", capacity=1)
    fn = await create_function(stack.client, f"{PY} examples/echo_server.py")
    assert (await deploy(stack.client, fn, min_instances=2, max_instances=2)).status_code == 200
    active = await wait_status(stack.client, fn, "ACTIVE")
    assert len(active["activeInstances"]) == 2
    assert len(east.supervisors) == 1 and len(west.supervisors) == 1
    for agent in (east, west):
        [supervisor] = agent.supervisors.values()
        assert supervisor.port is not None and await _pid(supervisor.port) is not None


async def test_scale_from_zero_on_wake(stack: Platform) -> None:
    agent = await stack.start_agent()
    fn = await create_function(stack.client, f"{PY} examples/echo_server.py")
    assert (await deploy(stack.client, fn, min_instances=0, max_instances=2)).status_code == 200
    await wait_status(stack.client, fn, "ACTIVE")
    assert agent.supervisors == {}
    wake = await stack.client.post(f"/v1/fnplane/versions/{fn['versionId']}/wake")
    assert wake.status_code == 202, wake.text
    assert wake.json()["requested"] is True

    async def running() -> list | None:
        instances = (await get_version(stack.client, fn)).get("activeInstances") or []
        return instances if any(i.get("instanceStatus") == "RUNNING" for i in instances) else None

    await wait_for(running)
    again = await stack.client.post(f"/v1/fnplane/versions/{fn['versionId']}/wake")
    assert again.json()["requested"] is False
