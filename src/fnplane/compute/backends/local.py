"""The local backend: each instance is a process group on this host (DESIGN.md section 3).

`containerArgs` is split like a POSIX shell splits words (shlex, no shell runs), `$(VAR)` references are
expanded from the instance environment as Kubernetes expands container args, and the process runs in the
agent's working directory with `containerEnvironment` plus the NVCF variables and a minimal PATH, HOME,
TMPDIR and LANG, nothing else of the agent's environment. It listens on a free port the agent picks
(`$PORT`), and when its `health.port` is not its `inferencePort` it serves its health check on a second
one (`$HEALTH_PORT`, else the same as `$PORT`); both are kept across restarts. With a sandbox (sandbox.py)
the command runs inside bubblewrap, seeing only the system, the working directory and its instance's
request directory (`<state>/requests/<instance>`, 0700, read-write; the worker puts each request's asset
and output directories there). Output goes through the agent into a rotated, size-bounded log file per
instance, so the agent also keeps the stderr tail that a failure report carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shlex
import shutil
import socket
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fnplane.compute.backends.base import (
    BackendError,
    ExitStatus,
    InstanceBackend,
    InstanceHandle,
    Progress,
    request_root,
    secret_files,
    separate_health_port,
)
from fnplane.compute.backends.processes import (
    ProcessTable,
    RotatingLog,
    follow_lines,
    marked_processes,
    stop_process_group,
    tail_lines,
    terminate_processes,
)
from fnplane.compute.backends.sandbox import (
    SANDBOX_HOME,
    SANDBOX_TMP,
    BubblewrapSandbox,
    SandboxedCommand,
    SandboxMounts,
)
from fnplane.shared.models.compute import InstanceAssignment

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
# the only variables of the agent's own environment a function gets (unless it sets them itself)
_INHERITED = ("PATH", "HOME", "TMPDIR", "LANG")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# an instance id names its request directory: one path component
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def expand_references(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` escapes, unknown refs stay as is."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(replace, value)


def split_args(container_args: str | None, env: dict[str, str]) -> list[str]:
    """containerArgs as words (shlex, as NVCA splits them), each with its `$(VAR)` references expanded;
    [] when there are none."""
    try:
        words = shlex.split(container_args or "")
    except ValueError as error:
        raise BackendError(f"containerArgs is not a valid command line: {error}") from error
    return [expand_references(word, env) for word in words]


def build_argv(container_args: str | None, env: dict[str, str]) -> list[str]:
    if not container_args or not container_args.strip():
        raise BackendError("the local backend needs containerArgs (a command line to run)")
    return split_args(container_args, env)


def build_environment(
    assignment: InstanceAssignment, port: int, base: dict[str, str], health_port: int | None = None
) -> dict[str, str]:
    """PATH, HOME, TMPDIR and LANG of `base`, then containerEnvironment, then the variables NVCF injects."""
    env = {k: base[k] for k in _INHERITED if k in base}
    env.setdefault("PATH", _DEFAULT_PATH)
    env.update(function_environment(assignment, port, health_port))
    return env


def function_environment(
    assignment: InstanceAssignment, port: int, health_port: int | None = None
) -> dict[str, str]:
    """containerEnvironment, then the variables NVCF injects (they win), for a function serving inference
    on `port` and its health check on `health_port` (None: on `port` too)."""
    env = dict(assignment.container_environment)
    health = assignment.health
    health_port = health_port or port
    env.update(
        {
            "INFERENCE_PORT": str(port),
            "PORT": str(port),
            # fnplane's own, beside PORT: where the function serves its health check (docs/backends.md)
            "HEALTH_PORT": str(health_port),
            "NVCF_FUNCTION_ID": assignment.function_id,
            "NVCF_FUNCTION_VERSION_ID": assignment.version_id,
            "NVCF_FUNCTION_NAME": assignment.function_name,
            "NVCF_NCA_ID": assignment.nca_id,
            "NVCF_INSTANCETYPE": assignment.instance_type,
            # NVCF's node-label value of the instance type; here the instance type is its own value
            "NVCF_INSTANCETYPE_VALUE": assignment.instance_type,
            "NVCF_BACKEND": assignment.backend,
            "NVCF_REGION": assignment.region,
            # as the worker's NVCF-ENV header says it (FNPLANE_WORKER_ENVIRONMENT, which workers inherit)
            "NVCF_ENV": os.environ.get("FNPLANE_WORKER_ENVIRONMENT") or "local",
            # NVCA's pod name in NVCF; the instance id here (the one the API and `fnplane logs` show)
            "INSTANCE_ID": assignment.instance_id,
            "NVCF_INSTANCE_ID": assignment.instance_id,
            # what NVCF's pods also see (compute.md 1.5)
            "INFERENCE_HEALTH_ENDPOINT": health.uri,
            "INFERENCE_HEALTH_PROTOCOL": health.protocol,
            "INFERENCE_HEALTH_PORT": str(health_port),
            "INFERENCE_HEALTH_EXPECTED_RESPONSE_CODE": str(health.expected_status_code),
            "MAX_REQUEST_CONCURRENCY": str(assignment.max_request_concurrency),
        }
    )
    # the platform's own prefix: its process markers are set (and for a sandbox removed) by the agent
    return {k: v for k, v in env.items() if not k.startswith("FNPLANE_")}


def _find_program(program: str, search_path: str, workdir: Path) -> None:
    """FileNotFoundError unless `program` names an executable (as execvp would find it)."""
    if "/" in program:
        found = str(workdir / program) if os.access(workdir / program, os.X_OK) else None
    else:
        found = shutil.which(program, path=search_path)
    if found is None or os.path.isdir(found):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports (all held at once while they are picked, so none comes twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def instance_handle(assignment: InstanceAssignment, host: str = "127.0.0.1") -> InstanceHandle:
    """A new instance's handle: a free port for the function, and a second one for its health check when
    `health.port` is not its inference port (`separate_health_port`)."""
    if separate_health_port(assignment) is None:
        return InstanceHandle(assignment.instance_id, host, free_port(host))
    port, health_port = free_ports(2, host)
    return InstanceHandle(assignment.instance_id, host, port, health_port=health_port)


@dataclass
class _Instance:
    handle: InstanceHandle
    log: RotatingLog
    process: asyncio.subprocess.Process | None = None
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    stderr: deque[bytes] = field(default_factory=deque)
    stderr_bytes: int = 0


class LocalProcessBackend(InstanceBackend):
    def __init__(
        self,
        *,
        state_dir: Path,
        workdir: Path,
        agent_id: str,
        stop_grace_s: float,
        error_log_bytes: int = 1024,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_backups: int = 2,
        sandbox: BubblewrapSandbox | None = None,
        hidden_paths: Sequence[Path] = (),
        read_only_paths: Sequence[Path] = (),
        shared_paths: Sequence[Path] = (),
    ) -> None:
        self.state_dir = state_dir
        self.sandbox = sandbox
        # besides the state directory: never visible to a sandboxed function (DIR, a TLS key)
        self.hidden_paths = list(hidden_paths)
        # besides the system and the working directory: visible read-only
        self.read_only_paths = list(read_only_paths)
        # read-write for every sandboxed function (an operator's shared volume)
        self.shared_paths = list(shared_paths)
        self.workdir = workdir
        self.stop_grace_s = stop_grace_s
        self.error_log_bytes = error_log_bytes
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.table = ProcessTable(state_dir / "processes.json", agent_id)
        self._instances: dict[str, _Instance] = {}

    @property
    def isolation(self) -> str:
        """What keeps a function from the platform: `bubblewrap`, or `none` (a single trusted user)."""
        return self.sandbox.isolation if self.sandbox is not None else "none"

    def log_path(self, instance_id: str) -> Path:
        return self.state_dir / "logs" / f"{instance_id}.log"

    async def start(self, assignment: InstanceAssignment, progress: Progress | None = None) -> InstanceHandle:
        instance = self._instances.get(assignment.instance_id)
        if instance is None:
            handle = instance_handle(assignment)
            log = RotatingLog(self.log_path(assignment.instance_id), self.log_max_bytes, self.log_backups)
            instance = self._instances[assignment.instance_id] = _Instance(handle, log)
        elif instance.process is not None and instance.process.returncode is None:
            raise BackendError(f"instance {assignment.instance_id} is already running", cause="system-error")
        handle = instance.handle
        env = build_environment(assignment, handle.port, dict(os.environ), handle.health_port)
        argv = build_argv(assignment.container_args, env)
        instance.stderr.clear()
        instance.stderr_bytes = 0
        command: SandboxedCommand | None = None
        try:
            root = await asyncio.to_thread(self._make_request_root, assignment.instance_id)
            if self.sandbox is not None:
                # inside bwrap a missing program is an exit code; outside it is a start failure
                _find_program(argv[0], env["PATH"], self.workdir)
                env.update({"HOME": SANDBOX_HOME, "TMPDIR": SANDBOX_TMP})
                mounts = SandboxMounts(
                    workdir=self.workdir,
                    writable=[root],
                    readable=self.read_only_paths,
                    shared=self.shared_paths,
                    hidden=[self.state_dir, *self.hidden_paths],
                    files=secret_files(assignment),
                )
                command = self.sandbox.wrap(argv, mounts, env)
                argv = command.argv
                # bwrap itself runs on the host: nothing of the tenant's in its own environment
                env = {"PATH": os.environ.get("PATH", _DEFAULT_PATH)}
            process = await self.table.spawn(
                assignment.instance_id,
                "function",
                argv,
                env=env,
                cwd=self.workdir,
                pass_fds=() if command is None else command.fds,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as error:
            message = f"cannot start {argv[0]!r}: {error.strerror or error}"
            instance.log.write(f"[fnplane] {message}\n".encode())
            self._remember_stderr(instance, message.encode())
            raise BackendError(message) from error
        finally:
            if command is not None:
                command.close()
        instance.process = process
        instance.handle.pid = process.pid
        assert process.stdout is not None and process.stderr is not None
        instance.pumps = [
            asyncio.create_task(self._pump(instance, process.stdout, is_stderr=False)),
            asyncio.create_task(self._pump(instance, process.stderr, is_stderr=True)),
        ]
        return instance.handle

    def _make_request_root(self, instance_id: str) -> Path:
        if not _SAFE_ID.fullmatch(instance_id):
            raise BackendError(f"instance id {instance_id!r} is not a path component", cause="system-error")
        root = request_root(self.state_dir, instance_id)
        root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        root.mkdir(mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)
        return root

    def _remove_request_root(self, instance_id: str) -> None:
        if _SAFE_ID.fullmatch(instance_id):
            # rmtree never follows a symlink the function left in it (shutil.rmtree.avoids_symlink_attacks)
            shutil.rmtree(request_root(self.state_dir, instance_id), ignore_errors=True)

    async def _pump(self, instance: _Instance, stream: asyncio.StreamReader, *, is_stderr: bool) -> None:
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                return
            instance.log.write(chunk)
            if is_stderr:
                self._remember_stderr(instance, chunk)

    def _remember_stderr(self, instance: _Instance, chunk: bytes) -> None:
        instance.stderr.append(chunk)
        instance.stderr_bytes += len(chunk)
        while instance.stderr and instance.stderr_bytes - len(instance.stderr[0]) >= self.error_log_bytes:
            instance.stderr_bytes -= len(instance.stderr.popleft())

    def stderr_tail(self, instance_id: str) -> str:
        instance = self._instances.get(instance_id)
        if instance is None:
            return ""
        data = b"".join(instance.stderr)[-self.error_log_bytes :]
        return data.decode("utf-8", "replace")

    async def wait(self, instance_id: str) -> ExitStatus:
        instance = self._instances[instance_id]
        if instance.process is None:
            return ExitStatus(None, self.stderr_tail(instance_id))
        code = await instance.process.wait()
        # the output of the run must be complete before anyone reads the stderr tail
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait(instance.pumps, timeout=2.0)
        return ExitStatus(code, self.stderr_tail(instance_id))

    def is_alive(self, instance_id: str) -> bool:
        instance = self._instances.get(instance_id)
        return bool(instance and instance.process and instance.process.returncode is None)

    def port(self, instance_id: str) -> int | None:
        instance = self._instances.get(instance_id)
        return instance.handle.port if instance else None

    async def stop(self, instance_id: str, *, forget: bool = True) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_grace_s
        instance = self._instances.get(instance_id)
        if instance is not None and instance.process is not None:
            if self.sandbox is not None:
                await self.sandbox.terminate_inside(instance.process, self.stop_grace_s)
            await stop_process_group(instance.process, max(deadline - loop.time(), 0.1))
            for pump in instance.pumps:
                pump.cancel()
            await asyncio.gather(*instance.pumps, return_exceptions=True)
            instance.pumps = []
        # what outlived the leader (its group, or a child that called setsid) still carries this agent's
        # and this instance's markers; the worker beside it has its own role and its own owner
        strays = await asyncio.to_thread(marked_processes, self.table.agent_id, instance_id, role="function")
        # group members had their SIGTERM with the leader: they get what is left of the same grace period
        await terminate_processes([process for process, _ in strays], max(deadline - loop.time(), 0.0))
        self.table.forget(instance_id, "function")
        if forget:
            await asyncio.to_thread(self._remove_request_root, instance_id)
        if forget and instance is not None:
            instance.log.close()
            del self._instances[instance_id]

    def knows(self, instance_id: str) -> bool:
        return instance_id in self._instances or self.log_path(instance_id).exists()

    def _log_for(self, instance_id: str) -> RotatingLog | None:
        instance = self._instances.get(instance_id)
        return instance.log if instance else None

    async def logs(self, instance_id: str, *, tail: int) -> list[str]:
        log = self._log_for(instance_id)
        if log is not None:
            return await asyncio.to_thread(log.tail_lines, tail)
        return await asyncio.to_thread(tail_lines, self.log_path(instance_id), self.log_backups, tail)

    async def follow(self, instance_id: str, *, tail: int) -> AsyncIterator[str]:
        async for line in follow_lines(self._log_for(instance_id), lambda: self.logs(instance_id, tail=tail)):
            yield line

    async def cleanup(self) -> list[str]:
        # one live agent per state directory (and so per agent id): ConflictError otherwise
        self.table.lock()
        found = await self.table.sweep_earlier(self.stop_grace_s)
        # what the earlier run's requests left behind
        await asyncio.to_thread(shutil.rmtree, self.state_dir / "requests", True)
        return found

    async def aclose(self) -> None:
        try:
            await asyncio.gather(*(self.stop(iid) for iid in list(self._instances)), return_exceptions=True)
        finally:
            self.table.unlock()
