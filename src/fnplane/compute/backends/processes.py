"""Process groups the agent owns: spawn, stop, a state file of PIDs, orphan sweep, rotated log files.

Every process is started in a new session (its own process group) with two environment markers,
FNPLANE_AGENT_ID and FNPLANE_INSTANCE_ID. The state file lists what is running; an agent that starts
again reads it and, to be sure nothing escaped (a child that called setsid), also scans the process table
for its agent id. Nothing this agent started survives it by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

AGENT_MARKER = "FNPLANE_AGENT_ID"
INSTANCE_MARKER = "FNPLANE_INSTANCE_ID"
# "function" or "worker": a stop of the function must not reap the worker the supervisor owns
ROLE_MARKER = "FNPLANE_PROCESS_ROLE"


class RotatingLog:
    """An append-only log file that rotates at `max_bytes` keeping `backups` old files (path.1, path.2...)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        # small appends to a local file; not worth a thread hop per line
        self._file = path.open("ab")
        self._size = path.stat().st_size
        self.listeners: set[Callable[[bytes], None]] = set()

    def write(self, data: bytes) -> None:
        if self._size + len(data) > self.max_bytes and self._size > 0:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)
        for listener in list(self.listeners):
            listener(data)

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = self.path if index == 1 else self.path.with_name(f"{self.path.name}.{index - 1}")
            if newer.exists():
                if index == self.backups:
                    older.unlink(missing_ok=True)
                newer.rename(older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._file = self.path.open("ab")
        self._size = 0

    def tail_lines(self, count: int) -> list[str]:
        return tail_lines(self.path, self.backups, count)

    def close(self) -> None:
        self._file.close()


def tail_lines(path: Path, backups: int, count: int) -> list[str]:
    """The last `count` lines across a rotated log file and its backups."""
    lines: deque[str] = deque(maxlen=max(count, 0))
    for file in [*(path.with_name(f"{path.name}.{i}") for i in range(backups, 0, -1)), path]:
        if file.exists():
            with file.open("rb") as handle:
                for raw in handle:
                    lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
    return list(lines)


@dataclass
class ProcessRecord:
    key: str  # "<instanceId>/<role>"
    instance_id: str
    role: str
    pid: int
    create_time: float


class ProcessTable:
    """The PIDs this agent started, mirrored to a JSON state file."""

    def __init__(self, state_file: Path, agent_id: str) -> None:
        self.state_file = state_file
        self.agent_id = agent_id
        self.records: dict[str, ProcessRecord] = {}

    def marker_env(self, instance_id: str) -> dict[str, str]:
        return {AGENT_MARKER: self.agent_id, INSTANCE_MARKER: instance_id}

    async def spawn(
        self,
        instance_id: str,
        role: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stdout: int | None = asyncio.subprocess.PIPE,
        stderr: int | None = asyncio.subprocess.PIPE,
        stdin: int | None = asyncio.subprocess.DEVNULL,
    ) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env={**env, **self.marker_env(instance_id), ROLE_MARKER: role},
            cwd=str(cwd),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            create_time = psutil.Process(process.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = 0.0
        key = f"{instance_id}/{role}"
        self.records[key] = ProcessRecord(key, instance_id, role, process.pid, create_time)
        self._save()
        return process

    def forget(self, instance_id: str, role: str) -> None:
        if self.records.pop(f"{instance_id}/{role}", None) is not None:
            self._save()

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        payload = [record.__dict__ for record in self.records.values()]
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload))
        temporary.replace(self.state_file)

    def load_earlier(self) -> list[ProcessRecord]:
        try:
            payload = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        return [ProcessRecord(**item) for item in payload]

    async def sweep_earlier(self, grace_s: float) -> list[str]:
        """Stop every process an earlier run of this agent started; their instance ids."""
        found: set[str] = set()
        victims: list[psutil.Process] = []
        for record in self.load_earlier():
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(record.pid)
                # a recycled PID has a different start time
                if abs(process.create_time() - record.create_time) < 0.01:
                    victims.append(process)
                    found.add(record.instance_id)
        for process, instance_id in marked_processes(self.agent_id):
            victims.append(process)
            found.add(instance_id)
        await terminate_processes(victims, grace_s)
        self.records.clear()
        self._save()
        return sorted(found)


def marked_processes(
    agent_id: str, instance_id: str | None = None, *, skip_role: str | None = None
) -> list[tuple[psutil.Process, str]]:
    """Processes whose environment carries this agent's marker (and the instance's, if given)."""
    own = os.getpid()
    found: list[tuple[psutil.Process, str]] = []
    for process in psutil.process_iter(["pid"]):
        if process.pid == own:
            continue
        try:
            environ = process.environ()
        except (psutil.Error, OSError):
            continue
        if environ.get(AGENT_MARKER) != agent_id:
            continue
        marked_instance = environ.get(INSTANCE_MARKER, "")
        if skip_role is not None and environ.get(ROLE_MARKER) == skip_role:
            continue
        if instance_id is None or marked_instance == instance_id:
            found.append((process, marked_instance))
    return found


async def terminate_processes(processes: list[psutil.Process], grace_s: float) -> None:
    """SIGTERM each process's group (and the process), wait up to `grace_s`, then SIGKILL what is left."""
    if not processes:
        return
    for process in processes:
        _signal_group(process.pid, signal.SIGTERM)
    _, alive = await asyncio.to_thread(psutil.wait_procs, processes, grace_s)
    for process in alive:
        _signal_group(process.pid, signal.SIGKILL)
    if alive:
        await asyncio.to_thread(psutil.wait_procs, alive, 5.0)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        pgid = os.getpgid(pid)
        # never signal our own group (a process that was not started with start_new_session)
        if pgid != os.getpgid(0):
            os.killpg(pgid, signum)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


async def stop_process_group(process: asyncio.subprocess.Process, grace_s: float) -> int | None:
    """SIGTERM the group of a child we spawned, SIGKILL after `grace_s`; reaps the child."""
    pid = process.pid
    if process.returncode is None:
        _signal_group(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            _signal_group(pid, signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 10.0)
    # the leader is gone; grandchildren may linger in its group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return process.returncode
