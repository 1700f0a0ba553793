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

from fnplane.compute import supervisor as supervisor_module
from fnplane.compute.backends.local import LocalProcessBackend
from fnplane.compute.backends.processes import marked_processes
from fnplane.compute.settings import AgentSettings
from fnplane.compute.supervisor import InstanceSupervisor
from fnplane.shared.models.compute import HealthCheck, InstanceReport, InstanceState

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
    assert "Last check: GET " in failed.error_log and ": 503, expected 200." in failed.error_log
    assert InstanceState.RUNNING not in [r.state for r in reports.items]
    assert marked_processes(settings.effective_agent_id) == []
    await supervisor.stop()


async def test_a_start_that_stays_unhealthy_says_what_its_health_check_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor_module, "HEALTH_DETAIL_AFTER_S", 0.5)
    settings = fast_settings(tmp_path, startup_timeout_s=30.0)
    supervisor, reports = await _run(settings, f"{PY} examples/never_healthy_server.py")
    try:

        async def said() -> str:
            while True:
                details = [r.detail for r in reports.items if r.state == InstanceState.STARTING and r.detail]
                if details:
                    return details[-1]
                reports.changed.clear()
                await reports.changed.wait()

        detail = await asyncio.wait_for(said(), 10)
        assert detail.startswith("health check: GET http://") and detail.endswith(": 503, expected 200")
    finally:
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
    assert failed.error_log.count("definitely-not-a-program") == 1  # said once, not again as stderr
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


class _SlowStartBackend(LocalProcessBackend):
    """A backend whose start takes a while and says so, as the container backend's pull does."""

    async def start(self, assignment, progress=None):  # type: ignore[no-untyped-def]
        assert progress is not None
        for n in range(1, 6):  # within half a second: the first word, a second later the newest
            progress(f"step {n} of 6")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # the reporter has long been idle
        progress("step 6 of 6")
        await asyncio.sleep(0.2)
        return await super().start(assignment, progress)


async def test_a_slow_start_is_reported_with_its_newest_word_at_most_once_a_second(
    settings: AgentSettings,
) -> None:
    backend = _SlowStartBackend(
        state_dir=settings.state_dir,
        workdir=settings.workdir,
        agent_id=settings.effective_agent_id,
        stop_grace_s=settings.stop_grace_s,
    )
    reports = Reports()
    supervisor = InstanceSupervisor(
        make_assignment(f"{PY} examples/echo_server.py"),
        backend=backend,
        table=backend.table,
        settings=settings,
        report=reports,
    )
    supervisor.start()
    try:
        await reports.until(InstanceState.RUNNING)
        said = [(r.state, r.detail) for r in reports.items]
        starting = InstanceState.STARTING
        # the first word, the newest of those that came within the second, the last one at once; then
        # the start is over and nothing more is said of it
        assert said[:3] == [(starting, f"step {n} of 6") for n in (1, 5, 6)], said
        assert all(detail is None for _, detail in said[3:]) and said[-1] == (InstanceState.RUNNING, None)
    finally:
        await supervisor.stop()


def _health(protocol: str, port: int) -> HealthCheck:
    return HealthCheck(
        protocol=protocol, uri="/health-only", port=port, timeoutSeconds=2.0, expectedStatusCode=200
    )


async def test_a_health_port_of_its_own_is_where_the_worker_checks_and_it_survives_a_restart(
    settings: AgentSettings,
) -> None:
    # inference on $PORT, health only on $HEALTH_PORT: checked on the inference port, never healthy
    supervisor, reports = await _run(
        settings,
        f"{PY} tests/e2e/health_port_function.py --port $(PORT) --health-port $(HEALTH_PORT)",
        inferencePort=8001,
        health=_health("HTTP", 8000),
    )
    try:
        await reports.until(InstanceState.RUNNING)
        port, health_port = supervisor.port, supervisor.health_port
        assert port is not None and health_port is not None and port != health_port
        async with httpx.AsyncClient(timeout=2.0) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/health-only")).status_code == 404
            assert (await client.get(f"http://127.0.0.1:{health_port}/health-only")).status_code == 200
            answer = (await client.post(f"http://127.0.0.1:{port}/x", json={"a": 1})).json()
        assert (
            answer["environ"]["HEALTH_PORT"] == answer["environ"]["INFERENCE_HEALTH_PORT"] == str(health_port)
        )
        [function] = [p for p, _ in marked_processes(settings.effective_agent_id, role="function")]
        seen = len(reports.items)
        os.kill(function.pid, signal.SIGKILL)
        await reports.until(InstanceState.STARTING, after=seen)
        running = await reports.until(InstanceState.RUNNING, after=seen)
        assert running.restarts == 1
        assert (supervisor.port, supervisor.health_port) == (port, health_port)
    finally:
        await supervisor.stop()


async def test_grpc_health_on_a_port_of_its_own(settings: AgentSettings) -> None:
    # the standard gRPC health service on $HEALTH_PORT only (the server listens on the PORT it is given)
    supervisor, reports = await _run(
        settings,
        f"env PORT=$(HEALTH_PORT) {PY} examples/grpc_server.py",
        inferencePort=8001,
        health=_health("gRPC", 8002),
    )
    try:
        await reports.until(InstanceState.RUNNING)
        assert supervisor.health_port not in (None, supervisor.port)
    finally:
        await supervisor.stop()
