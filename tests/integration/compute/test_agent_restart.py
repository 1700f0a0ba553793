"""An agent that dies (kill -9) and a new one on the same state directory: no orphans, instances back.

The first agent is a real `fnplane agent` child process, so its death is a real one: its function and
worker processes outlive it. The new agent (same home and cluster name, so the same agent id) stops
what the earlier run left (state file + environment marker) and runs the control plane's instances
again, under the same instance ids.
"""

from __future__ import annotations

import signal

import httpx
import psutil
from compute_stack import PY, Platform, create_function, deploy, started_processes, wait_for, wait_status


def _by_role(agent_id: str) -> dict[str, list[psutil.Process]]:
    return {role: started_processes(agent_id, role=role) for role in ("function", "worker")}


async def _serves(port: int) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return int((await client.get(f"http://127.0.0.1:{port}/pid")).json()["pid"])
    except httpx.HTTPError:
        return None


async def test_a_killed_agent_is_replaced_without_orphans_and_its_instances_run_again(
    stack: Platform,
) -> None:
    first, agent_id = await stack.start_agent_process("local")
    fn = await create_function(stack.client, f"{PY} examples/echo_server.py")

    async def deployed() -> bool:
        # 400 "no available clusters" until the child agent has registered its cluster
        response = await deploy(stack.client, fn, min_instances=2, max_instances=2)
        assert response.status_code in (200, 400), response.text
        return response.status_code == 200

    await wait_for(deployed, interval_s=0.2)
    active = await wait_status(stack.client, fn, "ACTIVE", timeout_s=30)
    instance_ids = sorted(i["instanceId"] for i in active["activeInstances"])
    assert len(instance_ids) == 2

    async def both_running() -> dict[str, list[psutil.Process]] | None:
        roles = _by_role(agent_id)
        ok = len(roles.get("function", [])) == 2 and len(roles.get("worker", [])) == 2
        return roles if ok else None

    roles = await wait_for(both_running)
    old = {p.pid: p for group in roles.values() for p in group}

    first.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    # the workers outlive their agent (each runs in a session of its own); sandboxed functions die
    # with it (bwrap --die-with-parent), unsandboxed ones outlive it too: the sweep finds either
    assert any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in roles["worker"])

    second = await stack.start_agent("local")
    assert second.agent_id == agent_id
    # the earlier run's processes are gone before the new agent runs anything
    for process in old.values():
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE

    async def running_again() -> bool:
        ids = sorted(second.supervisors)
        ports = [s.port for s in second.supervisors.values() if s.healthy and s.port is not None]
        if ids != instance_ids or len(ports) != 2:
            return False
        return all([await _serves(port) is not None for port in ports])

    await wait_for(running_again, timeout_s=30)
    await wait_status(stack.client, fn, "ACTIVE", timeout_s=30)
    # exactly one function process and one worker per instance, all new: no orphan of the first run
    roles = _by_role(agent_id)
    assert len(roles.get("function", [])) == 2 and len(roles.get("worker", [])) == 2
    assert not {p.pid for group in roles.values() for p in group} & set(old)
