"""The sandbox a function process runs in (process backend): bubblewrap namespaces.

A function is code the platform did not write. `BubblewrapSandbox.wrap()` turns its command line into
`bwrap ... -- <command>` so that it runs with:

* its own mount namespace, built from nothing: the system directories (`/usr`, `/etc`, the `/bin`,
  `/lib*` links, `/opt`), the working directory, the platform's own Python installation (its venv and
  base interpreter, which may live anywhere, e.g. under ~/.pyenv) and the operator's
  `sandbox_read_only_paths`, all read-only; a fresh `/proc` and `/dev`; a private tmpfs for `/tmp`
  (TMPDIR) and for HOME; read-write only its instance's request directory, bound at the same path, so
  the NVCF-ASSET-DIR and NVCF-LARGE-OUTPUT-DIR paths the worker hands it are valid inside;
* the platform hidden: DIR (keys, secrets, database, NATS store, agent state and logs, other instances'
  request directories) gets an empty tmpfs over it wherever it lies inside a bound directory (DIR in
  the working directory), and the host's own secrets in `/etc` are covered too;
* its own PID and IPC namespaces (it sees no platform process, so no `/proc/<pid>/environ` or memory
  of one), no capabilities, a new session (no terminal to inject into), and death with its parent;
* the host's network (the worker calls it on 127.0.0.1, on `$PORT` and its health check on `$HEALTH_PORT`).

The function's environment never becomes bwrap's own: bwrap starts on the host, as the agent's user,
before any namespace exists, so a variable the dynamic loader reads (`LD_PRELOAD`, `LD_LIBRARY_PATH`,
`GCONV_PATH`, ...) would run the tenant's code there. bwrap gets only the agent's `PATH` and the
process markers; the command's environment is set inside (`--clearenv`, then `--setenv`), from
arguments read from a memfd (`--args`), so values (secrets) are not on bwrap's world-readable command
line either. The process-marker variables the agent uses to find its processes after a restart
(processes.py) stay on the outer bwrap process: a function sees no `FNPLANE_*` variable.

A stop gives the function its SIGTERM and grace period inside the sandbox (`terminate_inside`), then
the process group of bwrap is stopped, which ends the namespace: when its first process dies, the
kernel kills every process in it.

`select_sandbox(mode)` picks the sandbox of a setting (`auto` | `bubblewrap` | `none`); `auto` probes
bwrap once and falls back to none, which the platform then reports (a warning at start, `/health`
`"isolation": "none"`): the process backend is then for a single trusted user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from fnplane.shared.errors import UnavailableError
from fnplane.shared.loop import within

log = logging.getLogger(__name__)

ISOLATION_NONE = "none"
ISOLATION_BUBBLEWRAP = "bubblewrap"

# inside the sandbox: each a private tmpfs
SANDBOX_HOME = "/home/function"
SANDBOX_TMP = "/tmp"

# read-only system directories; links among them (merged /usr) are recreated as links
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# the host's secrets inside the system directories: covered (empty file / empty tmpfs)
_HIDDEN_SYSTEM_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
_HIDDEN_SYSTEM_DIRS = ("/etc/ssh", "/etc/ssl/private")
_COVER_INIT = ("--ro-bind", "/dev/null", "/proc/1/environ", "--ro-bind", "/dev/null", "/proc/1/mem")
# the probe: the namespaces a function gets, around `true`
_PROBE_TIMEOUT_S = 10.0


class SandboxError(UnavailableError):
    """The configured sandbox cannot run here (the agent does not start)."""


@dataclass(frozen=True)
class SandboxMounts:
    """What one function's sandbox shows besides the system: built per instance by the backend."""

    workdir: Path
    # read-write, bound at the same path (the instance's request directory)
    writable: list[Path] = field(default_factory=list)
    # read-only, besides the system and the working directory
    readable: list[Path] = field(default_factory=list)
    # read-write directories the operator shares with every function (never over what is hidden)
    shared: list[Path] = field(default_factory=list)
    # never visible, wherever they lie (DIR, the agent's state directory, a TLS key)
    hidden: list[Path] = field(default_factory=list)
    # files made inside, read-only, from these contents (the version's secrets.json); none on the host
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class SandboxedCommand:
    """bwrap's command line, and the memfds it reads (the rest of its arguments, with the environment
    of the command inside; the contents of `SandboxMounts.files`), which the child inherits and the
    caller closes once it started (`close()`)."""

    argv: list[str]
    fds: list[int]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def _memfd_of(content: bytes) -> int:
    """A memfd holding `content`, read from its start (bwrap's `--args FD`, `--ro-bind-data FD`)."""
    fd = os.memfd_create("fnplane-sandbox")  # close-on-exec: passed to bwrap alone (pass_fds)
    data = memoryview(content)
    while data:
        data = data[os.write(fd, data) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class BubblewrapSandbox:
    """`bwrap` around a function's command line; `isolation` names it in /health."""

    isolation = ISOLATION_BUBBLEWRAP

    def __init__(self, executable: str, *, tmpfs_bytes: int = 0) -> None:
        self.executable = executable
        self.tmpfs_bytes = tmpfs_bytes

    def wrap(self, argv: Sequence[str], mounts: SandboxMounts, env: Mapping[str, str]) -> SandboxedCommand:
        """The bwrap command line that runs `argv` in the sandbox with exactly the environment `env`."""
        settings = ["--clearenv"]
        for name, value in env.items():
            settings += ["--setenv", name, value]
        fds = [_memfd_of(b"".join(arg.encode() + b"\0" for arg in settings))]
        args_fd = fds[0]
        args = [
            self.executable,
            "--args",
            str(args_fd),
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-drop",
            "ALL",
        ]
        args += _system_mounts()
        # the namespace's init is a fork of bwrap and so carries its environment (the process markers)
        args += ["--proc", "/proc", *_COVER_INIT, "--dev", "/dev"]
        args += self._tmpfs(SANDBOX_TMP) + self._tmpfs(SANDBOX_HOME)
        bound = [Path(p) for p in _SYSTEM_DIRS]
        readable = [mounts.workdir, *_platform_python(), *mounts.readable]
        for path in _outermost(p for p in readable if p.exists()):
            args += ["--ro-bind", str(path), str(path)]
            bound.append(path)
        for path in mounts.shared:
            if path.is_dir():
                args += ["--bind", str(path), str(path)]
                bound.append(path)
        # hidden after every bind it may lie in, before the request directories that lie in it
        for path in mounts.hidden:
            if not any(_inside(path, b) for b in bound) or not path.exists():
                continue
            if path.is_dir():
                args += ["--perms", "0700", *self._tmpfs(str(path))]
            else:
                args += ["--ro-bind", "/dev/null", str(path)]
        for path in mounts.writable:
            args += ["--bind", str(path), str(path)]
        for inside, content in mounts.files.items():
            fds.append(_memfd_of(content))
            args += ["--dir", str(Path(inside).parent)]
            args += ["--perms", "0444", "--ro-bind-data", str(fds[-1]), inside]
        args += ["--chdir", str(mounts.workdir)]
        return SandboxedCommand([*args, "--", *argv], fds)

    async def terminate_inside(self, process: asyncio.subprocess.Process, grace_s: float) -> None:
        """SIGTERM the function's processes inside the sandbox, and wait up to `grace_s` for it to end.

        bwrap forwards no signal: a SIGTERM to bwrap itself ends it at once, and its end kills the
        namespace with SIGKILL (--die-with-parent). The function gets its grace period this way: bwrap
        (outside) -> the namespace's init (bwrap) -> the command and its children, which get the SIGTERM.
        """
        if process.returncode is not None:
            return
        try:
            inits = psutil.Process(process.pid).children()
            inside = [p for init in inits for p in init.children(recursive=True)]
        except psutil.Error:
            return
        for member in inside:
            with contextlib.suppress(psutil.Error):
                member.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await within(process.wait(), grace_s)

    def _tmpfs(self, path: str) -> list[str]:
        size = ["--size", str(self.tmpfs_bytes)] if self.tmpfs_bytes > 0 else []
        return [*size, "--tmpfs", path]

    def probe(self) -> str | None:
        """Why bwrap cannot build a sandbox here (None: it can), from a real run of `true`."""
        command = self.wrap(["true"], SandboxMounts(workdir=Path("/")), {})
        try:
            done = subprocess.run(
                command.argv,
                capture_output=True,
                timeout=_PROBE_TIMEOUT_S,
                check=False,
                pass_fds=command.fds,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{self.executable} does not run: {error}"
        finally:
            command.close()
        if done.returncode != 0:
            return done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
        return None


def select_sandbox(mode: str, *, executable: str = "bwrap", tmpfs_bytes: int = 0) -> BubblewrapSandbox | None:
    """The sandbox of a setting: `bubblewrap` (SandboxError if it cannot run), `none`, or `auto`."""
    mode = mode.lower()
    if mode == ISOLATION_NONE:
        log.warning("the function sandbox is off: functions see the platform (single trusted user only)")
        return None
    if mode not in ("auto", ISOLATION_BUBBLEWRAP):
        raise SandboxError(f"unknown sandbox {mode!r} (auto, bubblewrap or none)")
    path = shutil.which(executable)
    reason = "bwrap not found (Debian package `bubblewrap`; scripts/install-system-packages)"
    if path is not None:
        sandbox = BubblewrapSandbox(path, tmpfs_bytes=tmpfs_bytes)
        probed = sandbox.probe()
        if probed is None:
            return sandbox
        reason = f"bwrap cannot create namespaces here: {probed}"
    if mode == ISOLATION_BUBBLEWRAP:
        raise SandboxError(f"the bubblewrap sandbox is not available: {reason}")
    log.warning(
        "no function sandbox (%s): functions run as the platform's user and can read its files; "
        "the process backend is for a single trusted user only",
        reason,
    )
    return None


def _system_mounts() -> list[str]:
    args: list[str] = []
    for name in _SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for name in _HIDDEN_SYSTEM_FILES:
        if os.path.isfile(name):
            args += ["--ro-bind", "/dev/null", name]
    for name in _HIDDEN_SYSTEM_DIRS:
        if os.path.isdir(name):
            args += ["--tmpfs", name]
    return args


def _platform_python() -> list[Path]:
    """The Python installation the platform itself runs from (its venv and the base interpreter), so
    the documented `.venv/bin/python app.py` runs; chosen by the operator, never by a function's
    containerArgs (a tenant naming a program must not choose what gets mounted)."""
    return [Path(sys.prefix), Path(sys.base_prefix)]


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Without the paths that lie inside another one (one bind covers them), and never `/` itself (the
    whole host: a working directory of `/` shows only the system)."""
    unique = sorted({Path(os.path.abspath(p)) for p in paths} - {Path("/")}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(_inside(path, k) for k in kept):
            kept.append(path)
    return kept
