"""The failure rules with real function processes and the real worker beside them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from compute_support import fast_settings, make_assignment

from fnplane.compute.backends.local import LocalProcessBackend
from fnplane.compute.backends.processes import marked_processes
from fnplane.compute.settings import AgentSettings
from fnplane.compute.supervisor import InstanceSupervisor
from fnplane.shared.models.compute import InstanceReport, InstanceState

PY = sys.executable


class Reports:
    """What the supervisor would send to the control plane (the agent's reporter is a callback)."""

    def __init__(self) -> None:
        self.items: list[InstanceReport] = []
        self.changed = asyncio.Event()

    def __call__(self, instance_id: str, report: InstanceReport) -> None:
        self.items.append(report)
        self.changed.set()

    async def until(self, state: InstanceState, timeout_s: float = 20.0, after: int = 0) -> InstanceReport:
        async def wait() -> InstanceReport:
            while True:
                for report in self.items[after:]:
                    if report.state == state:
                        return report
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(wait(), timeout_s)


async def _run(settings: AgentSettings, container_args: str, **overrides: object):
    backend = LocalProcessBackend(
        state_dir=settings.state_dir,
        workdir=settings.workdir,
        agent_id=settings.effective_agent_id,
        stop_grace_s=settings.stop_grace_s,
    )
    reports = Reports()
    supervisor = InstanceSupervisor(
        make_assignment(container_args, **overrides),
        backend=backend,
        table=backend.table,
        settings=settings,
        report=reports,
    )
    supervisor.start()
    return supervisor, reports


async def _pid(port: int) -> int:
    async with httpx.AsyncClient(timeout=2.0) as client:
        return int((await client.get(f"http://127.0.0.1:{port}/pid")).json()["pid"])


async def test_healthy_instance_runs_and_stops_without_leftovers(settings: AgentSettings) -> None:
    supervisor, reports = await _run(settings, f"{PY} examples/echo_server.py")
    try:
        await reports.until(InstanceState.STARTING)
        await reports.until(InstanceState.RUNNING)
        assert supervisor.port is not None
        await _pid(supervisor.port)
        # function + worker, both carrying the agent's marker
        assert len(marked_processes(settings.effective_agent_id)) == 2
    finally:
        await supervisor.stop()
    assert reports.items[-1].state == InstanceState.TERMINATED
    assert marked_processes(settings.effective_agent_id) == []


async def test_kill_dash_nine_restarts_and_becomes_healthy_again(settings: AgentSettings) -> None:
    supervisor, reports = await _run(settings, f"{PY} examples/echo_server.py")
    try:
        await reports.until(InstanceState.RUNNING)
        assert supervisor.port is not None
        first = await _pid(supervisor.port)
        os.kill(first, signal.SIGKILL)
        seen = len(reports.items)
        await reports.until(InstanceState.STARTING, after=seen)
        running = await reports.until(InstanceState.RUNNING, after=seen)
        assert running.restarts == 1
        assert await _pid(supervisor.port) != first
    finally:
        await supervisor.stop()


async def test_exit_at_once_fails_as_a_restart_loop_with_stderr(settings: AgentSettings) -> None:
    supervisor, reports = await _run(settings, f"{PY} examples/crash_server.py")
    failed = await reports.until(InstanceState.FAILED)
    assert failed.cause == "container-restart-loop"
    assert failed.error_log is not None and "CUDA_ERROR_NO_DEVICE" in failed.error_log
    assert failed.restarts == settings.restart_limit
    assert marked_processes(settings.effective_agent_id) == []
    await supervisor.stop()
    assert reports.items[-1].state == InstanceState.FAILED


async def test_never_healthy_fails_after_the_startup_timeout(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, startup_timeout_s=1.5)
    supervisor, reports = await _run(settings, f"{PY} examples/never_healthy_server.py")
    failed = await reports.until(InstanceState.FAILED)
    assert failed.cause == "degraded-worker"
    assert failed.error_log is not None
    assert "1.5s" in failed.error_log and "model weights missing" in failed.error_log
    assert InstanceState.RUNNING not in [r.state for r in reports.items]
    assert marked_processes(settings.effective_agent_id) == []
    await supervisor.stop()


async def test_slow_start_with_404_is_waited_for(settings: AgentSettings) -> None:
    supervisor, reports = await _run(settings, f"{PY} examples/slow_start_server.py --ready-after 1.5")
    try:
        await reports.until(InstanceState.RUNNING)
        assert supervisor.restarts == 0
    finally:
        await supervisor.stop()


async def test_grpc_health_protocol(settings: AgentSettings) -> None:
    supervisor, reports = await _run(settings, f"{PY} examples/grpc_server.py", protocol="gRPC")
    try:
        await reports.until(InstanceState.RUNNING)
    finally:
        await supervisor.stop()


async def test_missing_program_fails_at_once(settings: AgentSettings) -> None:
    supervisor, reports = await _run(settings, "definitely-not-a-program --port $(PORT)")
    failed = await reports.until(InstanceState.FAILED, timeout_s=5)
    assert failed.cause == "create-container-error"
    assert failed.error_log is not None and "definitely-not-a-program" in failed.error_log
    await supervisor.stop()


@pytest.mark.parametrize("busy_s", [0.6])
async def test_busy_time_reaches_the_supervisor(settings: AgentSettings, busy_s: float) -> None:
    supervisor, reports = await _run(settings, f"{PY} examples/echo_server.py")
    try:
        await reports.until(InstanceState.RUNNING)
        await asyncio.sleep(settings.metrics_interval_s * 2.5)
        sample = supervisor.take_load()
        # idle worker: capacity accrues (2 slots x elapsed), busy time does not
        assert sample.slot_seconds > 0
        assert sample.busy_slot_seconds == 0
        assert busy_s > 0
    finally:
        await supervisor.stop()
