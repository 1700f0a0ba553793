"""The local backend with real processes: ports, process groups, markers, logs, no orphans."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from compute_support import REPO, STUBBORN, make_assignment

from fnplane.compute.backends.base import BackendError
from fnplane.compute.backends.local import LocalProcessBackend
from fnplane.compute.backends.processes import (
    INSTANCE_MARKER,
    RotatingLog,
    marked_processes,
    terminate_processes,
)
from fnplane.shared.errors import ConflictError


def _backend(state_dir: Path, agent_id: str = "test-agent") -> LocalProcessBackend:
    # an agent id unique to this test's directory, so parallel tests never see each other's processes
    return LocalProcessBackend(
        state_dir=state_dir,
        workdir=REPO,
        agent_id=f"{agent_id}-{state_dir.name}-{os.getpid()}",
        stop_grace_s=3.0,
    )


async def _get_pid(port: int, timeout_s: float = 10.0) -> int:
    async with httpx.AsyncClient(timeout=1.0) as client:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                return int((await client.get(f"http://127.0.0.1:{port}/pid")).json()["pid"])
            except httpx.HTTPError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def test_instance_listens_on_its_port_in_its_own_group_with_markers(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    assignment = make_assignment("python examples/echo_server.py")
    handle = await backend.start(assignment)
    try:
        pid = await _get_pid(handle.port)
        assert pid == handle.pid
        assert os.getpgid(pid) == pid != os.getpgid(0)
        environ = psutil.Process(pid).environ()
        assert environ[INSTANCE_MARKER] == assignment.instance_id
        assert environ["PORT"] == str(handle.port)
        assert [p.pid for p, _ in marked_processes(backend.table.agent_id)] == [pid]
    finally:
        await backend.stop(assignment.instance_id)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert marked_processes(backend.table.agent_id) == []
    assert any("listening on" in line for line in await backend.logs(assignment.instance_id, tail=10))


async def test_exit_at_once_gives_exit_code_and_stderr_tail(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    assignment = make_assignment("python examples/crash_server.py")
    await backend.start(assignment)
    status = await asyncio.wait_for(backend.wait(assignment.instance_id), 10)
    assert status.code == 3
    assert "CUDA_ERROR_NO_DEVICE" in status.stderr_tail
    await backend.stop(assignment.instance_id)


async def test_missing_command_is_a_create_container_error(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    with pytest.raises(BackendError) as caught:
        await backend.start(make_assignment("./no-such-program --port $(PORT)"))
    assert caught.value.cause == "create-container-error"
    assert "no-such-program" in caught.value.detail


async def _until_logged(backend: LocalProcessBackend, instance_id: str, text: str) -> None:
    for _ in range(200):
        if any(text in line for line in await backend.logs(instance_id, tail=20)):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{text!r} not in the log of {instance_id}")


def _pids(found: list[tuple[psutil.Process, str]]) -> set[int]:
    return {process.pid for process, _ in found}


async def test_stop_kills_children_even_when_they_ignore_sigterm(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend.stop_grace_s = 0.5
    # `python` may be a pyenv shim whose helper processes come and go while it starts: count only once
    # the function said it is up, and compare with its real process tree rather than a number
    assignment = make_assignment(f'python -c "{STUBBORN}"')
    handle = await backend.start(assignment)
    try:
        await _until_logged(backend, assignment.instance_id, "up")
        assert handle.pid is not None
        leader = psutil.Process(handle.pid)
        tree = {leader.pid, *(child.pid for child in leader.children(recursive=True))}
        assert len(tree) == 2
        assert _pids(marked_processes(backend.table.agent_id)) == tree
    finally:
        await backend.stop(assignment.instance_id)
    assert marked_processes(backend.table.agent_id) == []


async def test_processes_of_another_agent_are_never_touched(tmp_path: Path) -> None:
    mine = _backend(tmp_path / "mine")
    assert await mine.cleanup() == []
    # another agent with its own id, running an instance with the same id, that ignores SIGTERM
    other = _backend(tmp_path / "other")
    other.stop_grace_s = 0.5
    assignment = make_assignment(f'python -c "{STUBBORN}"')
    echo = make_assignment(f"{sys.executable} examples/echo_server.py", instanceId=assignment.instance_id)
    await other.start(assignment)
    try:
        await _until_logged(other, assignment.instance_id, "up")
        theirs = _pids(marked_processes(other.table.agent_id))
        assert len(theirs) == 2
        ours = await _get_pid((await mine.start(echo)).port)
        assert _pids(marked_processes(mine.table.agent_id)) == {ours}
        await mine.stop(assignment.instance_id)
        assert marked_processes(mine.table.agent_id) == []
        ours = await _get_pid((await mine.start(echo)).port)
        # a second agent on our state directory (same id, or another one) is refused while we run
        for agent_id in ("test-agent", "intruder"):
            with pytest.raises(ConflictError):
                await _backend(tmp_path / "mine", agent_id).cleanup()
        # and were the lock bypassed, an agent of another id reading our state file would still refuse
        # our processes: their environment carries our marker, not its
        mine.table.unlock()
        intruder = _backend(tmp_path / "mine", "intruder")
        assert await intruder.cleanup() == []
        intruder.table.unlock()
        assert _pids(marked_processes(mine.table.agent_id)) == {ours}
        assert _pids(marked_processes(other.table.agent_id)) == theirs
    finally:
        await mine.aclose()
        await other.stop(assignment.instance_id)
    assert marked_processes(mine.table.agent_id) == []
    assert marked_processes(other.table.agent_id) == []


async def test_a_restarted_agent_stops_what_the_earlier_run_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _backend(tmp_path)
    assignment = make_assignment("python examples/echo_server.py")
    handle = await first.start(assignment)
    pid = await _get_pid(handle.port)
    # the agent "crashes": nothing is stopped, only its state file remains
    second = _backend(tmp_path)
    found = await second.cleanup()
    assert found == [assignment.instance_id]
    assert marked_processes(second.table.agent_id) == []
    # the process was this event loop's child: the sweep signals it, asyncio's child watcher reaps it
    status = await asyncio.wait_for(first.wait(assignment.instance_id), 5)
    assert status.code == -signal.SIGTERM
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "Unknown child process" not in caplog.text


async def test_kill_dash_nine_is_seen_as_an_exit(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    assignment = make_assignment("python examples/echo_server.py")
    handle = await backend.start(assignment)
    pid = await _get_pid(handle.port)
    os.kill(pid, signal.SIGKILL)
    status = await asyncio.wait_for(backend.wait(assignment.instance_id), 5)
    assert status.code == -signal.SIGKILL
    # a restart keeps the port
    again = await backend.start(assignment)
    assert again.port == handle.port
    assert await _get_pid(again.port) != pid
    await backend.stop(assignment.instance_id)


def test_rotating_log_is_bounded_and_keeps_the_tail(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "x.log", max_bytes=100, backups=1)
    for index in range(100):
        log.write(f"line {index}\n".encode())
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["x.log", "x.log.1"]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    assert log.tail_lines(3) == ["line 97", "line 98", "line 99"]


def test_terminating_a_child_leaves_reaping_to_its_owner() -> None:
    # asyncio's child watcher waits on every PID the agent spawned; were the psutil paths (strays,
    # sweeps) to waitpid such a child, the watcher would log "Unknown child process" and report 255.
    # A plain Popen child stands in for the watcher: its status must still be there for us to reap.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        asyncio.run(terminate_processes([psutil.Process(child.pid)], 5.0))
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        assert pid == child.pid and os.WTERMSIG(status) == signal.SIGTERM
        child.returncode = -signal.SIGTERM
    finally:
        if child.returncode is None:
            child.kill()
            child.wait()
