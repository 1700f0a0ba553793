"""Process groups the agent owns: spawn, stop, a state file of PIDs, orphan sweep, rotated log files.

Every process is started in a new session (its own process group) with three environment markers,
FNPLANE_AGENT_ID, FNPLANE_INSTANCE_ID and FNPLANE_PROCESS_ROLE. The state file lists what is running; an
agent that starts again reads it and, to be sure nothing escaped (a child that called setsid), also scans
the process table for its agent id. Nothing this agent started survives it by design, and nothing without
its agent id is ever signalled.

One owner for reaping: asyncio's child watcher reaps every process spawned here (it waits on each PID
it started). The psutil paths (strays, sweeps) only signal and then poll until a process is gone or a
zombie; they never call waitpid, which would steal the exit status from the watcher ("Unknown child
process pid ..." and a returncode of 255).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from fnplane.shared.errors import ConflictError
from fnplane.shared.loop import within

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


async def follow_lines(
    log: RotatingLog | None, earlier: Callable[[], Awaitable[list[str]]]
) -> AsyncIterator[str]:
    """The lines `earlier()` reads, then each new line written to `log` (None: only the earlier ones),
    until the consumer stops. A reader that cannot keep up loses lines rather than stall the writer."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10000)

    def listener(data: bytes) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(data)

    if log is not None:
        log.listeners.add(listener)  # before the earlier lines are handed out: nothing falls between
    try:
        for line in await earlier():
            yield line
        if log is None:
            return
        pending = b""
        while True:
            pending += await queue.get()
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                yield raw.decode("utf-8", "replace")
    finally:
        if log is not None:
            log.listeners.discard(listener)


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
        if not agent_id:
            raise ValueError("an agent needs a non-empty agent id")
        self.state_file = state_file
        self.agent_id = agent_id
        self.records: dict[str, ProcessRecord] = {}
        self._lock_fd: int | None = None

    @property
    def lock_file(self) -> Path:
        return self.state_file.with_name("agent.lock")

    def lock(self) -> None:
        """Hold the state directory for as long as this agent runs; ConflictError if another agent does.

        Two live agents on one state directory would share an agent id and stop each other's processes
        (the sweep on start, the marker scans). The lock is an flock on a file descriptor that children
        do not inherit (PEP 446), so the kernel releases it when this process exits, even on kill -9,
        and a function process left behind never keeps a new agent from starting.
        """
        if self._lock_fd is not None:
            return
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConflictError(
                f"another agent is running with the state directory {self.lock_file.parent}"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

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
        pass_fds: Sequence[int] = (),
    ) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env={**env, **self.marker_env(instance_id), ROLE_MARKER: role},
            cwd=str(cwd),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            pass_fds=pass_fds,
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
        victims: dict[int, psutil.Process] = {}
        for record in self.load_earlier():
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(record.pid)
                # a recycled PID has a different start time, and a process of another agent (a state
                # directory shared by mistake) has another marker: neither is ours to stop
                if (
                    abs(process.create_time() - record.create_time) < 0.01
                    and process.environ().get(AGENT_MARKER) == self.agent_id
                ):
                    victims[process.pid] = process
                    found.add(record.instance_id)
        for process, instance_id in marked_processes(self.agent_id):
            victims.setdefault(process.pid, process)
            found.add(instance_id)
        await terminate_processes(list(victims.values()), grace_s)
        self.records.clear()
        self._save()
        return sorted(found)


def marked_processes(
    agent_id: str, instance_id: str | None = None, *, role: str | None = None
) -> list[tuple[psutil.Process, str]]:
    """Live processes whose environment carries this agent's marker (and the instance's and role, if given).

    The agent id must match exactly: processes of other agents on the host (another `fnplane up`, a
    parallel test) are never returned. Zombies have no readable environment and are left out.
    """
    if not agent_id:
        raise ValueError("an empty agent id would match unmarked processes")
    own = os.getpid()
    found: list[tuple[psutil.Process, str]] = []
    for process in psutil.process_iter():
        if process.pid == own:
            continue
        try:
            environ = process.environ()
        except (psutil.Error, OSError):
            continue
        if environ.get(AGENT_MARKER) != agent_id:
            continue
        if role is not None and environ.get(ROLE_MARKER) != role:
            continue
        marked_instance = environ.get(INSTANCE_MARKER, "")
        if instance_id is None or marked_instance == instance_id:
            found.append((process, marked_instance))
    return found


def _gone(process: psutil.Process) -> bool:
    """Exited (a zombie counts: its reaper is its parent, never this function)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


async def _wait_gone(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Poll until every process is gone or `timeout_s` passed; those still alive. Never reaps."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    alive = [p for p in processes if not _gone(p)]
    while alive and loop.time() < deadline:
        await asyncio.sleep(min(0.05, max(deadline - loop.time(), 0)))
        alive = [p for p in alive if not _gone(p)]
    return alive


async def terminate_processes(processes: list[psutil.Process], grace_s: float) -> None:
    """SIGTERM each process's group (and the process), wait up to `grace_s`, then SIGKILL what is left."""
    alive = [p for p in processes if not _gone(p)]
    if not alive:
        return
    for process in alive:
        _signal_live(process, signal.SIGTERM)
    alive = await _wait_gone(alive, grace_s)
    for process in alive:
        _signal_live(process, signal.SIGKILL)
    if alive:
        await _wait_gone(alive, 5.0)


def _signal_live(process: psutil.Process, signum: int) -> None:
    # is_running compares the start time: a PID recycled since the scan is someone else's process
    with contextlib.suppress(psutil.Error):
        if process.is_running():
            _signal_group(process.pid, signum)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        pgid = os.getpgid(pid)
        # never signal our own group (a process that was not started with start_new_session)
        if pgid != os.getpgid(0):
            os.killpg(pgid, signum)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


async def stop_process_group(process: asyncio.subprocess.Process, grace_s: float) -> int | None:
    """SIGTERM the group of a child we spawned, SIGKILL the group after `grace_s`; asyncio reaps it.

    The group is signalled only while its leader is unreaped, so its PID (= the group id) cannot have
    been given to another process. Members left after the leader's exit are found by their markers
    (LocalProcessBackend.stop), never by a group id that may be recycled by then.
    """
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await within(process.wait(), grace_s)
        except TimeoutError:
            if process.returncode is None:
                _signal_group(process.pid, signal.SIGKILL)
            await within(process.wait(), 10.0)
    return process.returncode
