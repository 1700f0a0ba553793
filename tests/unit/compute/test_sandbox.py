"""The local backend with the bubblewrap sandbox, with real processes: markers stay outside, a stop gives
the function its SIGTERM inside and leaves nothing, the sweep after an agent restart still finds it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from compute_support import REPO, STUBBORN, make_assignment

from fnplane.compute.backends.base import request_root
from fnplane.compute.backends.local import LocalProcessBackend
from fnplane.compute.backends.processes import AGENT_MARKER, INSTANCE_MARKER, ROLE_MARKER, marked_processes
from fnplane.compute.backends.sandbox import BubblewrapSandbox, SandboxError, select_sandbox

# prints its environment's FNPLANE_ names, then "up"; on SIGTERM prints "got SIGTERM" and exits 0
_GRACEFUL = (
    "import os,signal,sys,time;"
    "signal.signal(signal.SIGTERM, lambda *a: (print('got SIGTERM',flush=True), sys.exit(0)));"
    "print('fnplane vars:', [k for k in os.environ if k.startswith('FNPLANE_')], flush=True);"
    "print('up',flush=True);time.sleep(60)"
)


def _sandbox() -> BubblewrapSandbox:
    sandbox = select_sandbox("bubblewrap")
    assert sandbox is not None
    return sandbox


def _backend(state_dir: Path, agent_id: str | None = None) -> LocalProcessBackend:
    return LocalProcessBackend(
        state_dir=state_dir,
        workdir=REPO,
        agent_id=agent_id or f"sandbox-{state_dir.name}-{os.getpid()}",
        stop_grace_s=3.0,
        sandbox=_sandbox(),
    )


async def _until_logged(backend: LocalProcessBackend, instance_id: str, text: str) -> list[str]:
    for _ in range(200):
        lines = await backend.logs(instance_id, tail=20)
        if any(text in line for line in lines):
            return lines
        await asyncio.sleep(0.05)
    pytest.fail(f"{text!r} not in the log of {instance_id}")


def _files_holding(root: Path, data: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


def _tree(pid: int) -> list[psutil.Process]:
    leader = psutil.Process(pid)
    return [leader, *leader.children(recursive=True)]


def _all_gone(processes: list[psutil.Process], within_s: float = 5.0) -> bool:
    """All ended, within a moment: a SIGKILLed namespace's processes die when the kernel gets to them."""

    def gone(p: psutil.Process) -> bool:
        try:
            return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    _, alive = psutil.wait_procs([p for p in processes if not gone(p)], timeout=within_s)
    return all(gone(p) for p in alive)


async def test_markers_stay_on_bwrap_and_the_function_serves_from_its_namespace(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    assignment = make_assignment(f"{sys.executable} examples/echo_server.py")
    handle = await backend.start(assignment)
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            for _ in range(100):
                try:
                    pid = (await client.get(f"http://127.0.0.1:{handle.port}/pid")).json()["pid"]
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the sandboxed function never answered")
        assert pid <= 3  # its own PID namespace
        assert handle.pid is not None
        outer = psutil.Process(handle.pid)
        assert outer.environ()[INSTANCE_MARKER] == assignment.instance_id
        # the namespace's init (a fork of bwrap) shares bwrap's environment; the command has no marker
        [init] = outer.children()
        [command] = init.children()
        assert "echo_server.py" in " ".join(command.cmdline())
        assert not [name for name in command.environ() if name.startswith("FNPLANE_")]
        assert AGENT_MARKER in init.environ()
        root = request_root(tmp_path, assignment.instance_id)
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
    finally:
        await backend.stop(assignment.instance_id)
    assert not root.exists()


async def test_the_tenant_environment_reaches_only_the_command_inside(tmp_path: Path) -> None:
    """bwrap runs on the host before any namespace exists: a tenant's LD_PRELOAD in its environment
    would run tenant code there, as the agent's user. Nor may a secret sit on bwrap's command line."""
    backend = _backend(tmp_path)
    secret = "s3cret-" + os.urandom(4).hex()
    environment = {"LD_PRELOAD": str(tmp_path / "missing.so"), "TENANT_SECRET": secret}
    assignment = make_assignment(f'{sys.executable} -c "{_GRACEFUL}"', containerEnvironment=environment)
    handle = await backend.start(assignment)
    try:
        await _until_logged(backend, assignment.instance_id, "up")
        assert handle.pid is not None
        outer = psutil.Process(handle.pid)
        assert set(outer.environ()) <= {"PATH", AGENT_MARKER, INSTANCE_MARKER, ROLE_MARKER}
        assert secret not in " ".join(outer.cmdline())
        [init] = outer.children()
        [command] = init.children()
        inside = command.environ()
        assert inside["TENANT_SECRET"] == secret and inside["LD_PRELOAD"].endswith("missing.so")
        assert inside["HOME"] == "/home/function" and inside["PORT"] == str(handle.port)
        assert not [name for name in inside if name.startswith("FNPLANE_")]
    finally:
        await backend.stop(assignment.instance_id)


async def test_the_secrets_file_is_made_inside_read_only(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    secrets = {"API_KEY": "k-" + os.urandom(4).hex(), "site.example.com": {"region": "us-west-2"}}
    program = (
        "import json,os,time;p='/var/secrets/secrets.json';"
        "print('secrets:',json.dumps(json.load(open(p))),flush=True);"
        "print('writable:',os.access(p,os.W_OK),flush=True);time.sleep(60)"
    )
    assignment = make_assignment(f'{sys.executable} -c "{program}"', secrets=secrets)
    await backend.start(assignment)
    try:
        lines = await _until_logged(backend, assignment.instance_id, "writable:")
        assert "writable: False" in lines
        [shown] = [line.split("secrets: ", 1)[1] for line in lines if line.startswith("secrets: ")]
        assert json.loads(shown) == secrets
    finally:
        await backend.stop(assignment.instance_id)
    # nothing of it on the host: no file of the agent's but the function's own log (it printed it) holds it
    assert [p.parent.name for p in _files_holding(tmp_path, secrets["API_KEY"].encode())] == ["logs"]


async def test_stop_gives_the_function_its_sigterm_inside_and_leaves_nothing(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    assignment = make_assignment(f'{sys.executable} -c "{_GRACEFUL}"')
    handle = await backend.start(assignment)
    lines = await _until_logged(backend, assignment.instance_id, "up")
    assert "fnplane vars: []" in lines
    assert handle.pid is not None
    tree = _tree(handle.pid)
    assert len(tree) >= 3  # bwrap, the namespace's init, the command
    await backend.stop(assignment.instance_id, forget=False)
    assert any("got SIGTERM" in line for line in await backend.logs(assignment.instance_id, tail=20))
    assert _all_gone(tree)
    assert marked_processes(backend.table.agent_id) == []


async def test_stop_kills_a_sandbox_whose_processes_ignore_sigterm(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend.stop_grace_s = 0.5
    assignment = make_assignment(f'{sys.executable} -c "{STUBBORN}"')
    handle = await backend.start(assignment)
    await _until_logged(backend, assignment.instance_id, "up")
    assert handle.pid is not None
    tree = _tree(handle.pid)
    assert len(tree) >= 4  # bwrap, init, the command and its child
    await backend.stop(assignment.instance_id)
    assert _all_gone(tree)
    assert marked_processes(backend.table.agent_id) == []


async def test_the_sweep_of_a_restarted_agent_finds_and_stops_sandboxed_functions(tmp_path: Path) -> None:
    """An earlier run's sandboxes are found by the markers bwrap carries (the function has none)."""
    agent_id = f"sweep-{tmp_path.name}-{os.getpid()}"
    earlier = _backend(tmp_path, agent_id)
    assert await earlier.cleanup() == []
    first, second = (make_assignment(f'{sys.executable} -c "{STUBBORN}"') for _ in range(2))
    trees = []
    for assignment in (first, second):
        handle = await earlier.start(assignment)
        await _until_logged(earlier, assignment.instance_id, "up")
        assert handle.pid is not None
        trees += _tree(handle.pid)
    earlier.table.unlock()  # as if its agent died (its processes do not die with an object)
    again = _backend(tmp_path, agent_id)
    again.stop_grace_s = 0.5
    try:
        found = await again.cleanup()
        assert found == sorted([first.instance_id, second.instance_id])
        assert _all_gone(trees)
        assert not (tmp_path / "requests").exists()
    finally:
        await again.aclose()
        for assignment in (first, second):
            await earlier.stop(assignment.instance_id)


async def test_the_sandbox_setting(caplog: pytest.LogCaptureFixture) -> None:
    assert select_sandbox("none") is None
    assert select_sandbox("auto") is not None
    with pytest.raises(SandboxError, match="not available"):
        select_sandbox("bubblewrap", executable="no-such-bwrap")
    with caplog.at_level(logging.WARNING):
        assert select_sandbox("auto", executable="no-such-bwrap") is None
    assert "single trusted user" in caplog.text
