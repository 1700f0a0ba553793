"""The one HTTP port, served by Granian's embedded server inside our own asyncio loop.

Granian's embedded mode (`granian.server.embed.Server`) runs its Rust I/O threads in this process
and schedules the ASGI calls on the running loop, so the control app, the gateway, the agent and the
supervisor share one loop and one process; no worker processes to supervise or leak.
`http: auto` serves HTTP/1.1 and h2c (prior knowledge) on the same port; with a certificate it serves
TLS and negotiates h2 or http/1.1 by ALPN.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from granian.constants import HTTPModes, Interfaces, SSLProtocols
from granian.http import HTTP1Settings, HTTP2Settings
from granian.server.embed import Server

from fnplane.shared.errors import UnavailableError
from fnplane.shared.loop import within
from fnplane.up.asgi import ASGIApp

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Granian's own bounds on what a client may send before the app sees the request."""

    http1_max_header_bytes: int = 128 * 1024
    http2_max_header_bytes: int = 64 * 1024
    http2_max_concurrent_streams: int = 1000


class HttpServer:
    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str,
        port: int,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        start_timeout_s: float = 10.0,
        limits: HeaderLimits | None = None,
        flag: str = "--http-port",
    ) -> None:
        self._host = host
        self.port = port
        self._flag = flag  # the option that picks another port, for the error of a port in use
        self._start_timeout_s = start_timeout_s
        limits = limits or HeaderLimits()
        # Granian's own logging setup would replace ours; it logs through the `granian` logger anyway.
        self._server = Server(
            app,
            address=host,
            port=port,
            interface=Interfaces.ASGINL,
            http=HTTPModes.auto,
            websockets=True,
            # No idle or keep-alive timeout of ours may cut a long-polling request (issue 4 item 6):
            # HTTP/1.1 only bounds the time to read headers, HTTP/2 answers client PINGs.
            # max_buffer_size bounds request line + headers (larger: 431); header_read_timeout their time
            http1_settings=HTTP1Settings(
                header_read_timeout=30_000, keep_alive=True, max_buffer_size=limits.http1_max_header_bytes
            ),
            http2_settings=HTTP2Settings(
                max_concurrent_streams=limits.http2_max_concurrent_streams,
                max_headers_size=limits.http2_max_header_bytes,
            ),
            # thousands of clients long-poll at once (issue 4 item 10); Granian's embedded defaults
            # (backlog 128, backpressure = backlog) refuse or reset connections beyond that
            backlog=4096,
            backpressure=4096,
            log_enabled=False,
            ssl_cert=tls_cert,
            ssl_key=tls_key,
            ssl_protocol_min=SSLProtocols.tls12,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self, connect_host: str) -> None:
        """Bind and serve; returns once the port accepts connections."""
        _ensure_port_free(self._host, self.port, self._flag)
        logging.getLogger("granian").setLevel(logging.ERROR)  # "embedded server is experimental"
        self._task = asyncio.create_task(self._server.serve(), name="granian")
        deadline = asyncio.get_running_loop().time() + self._start_timeout_s
        while True:
            if self._task.done():
                error = self._task.exception()
                raise UnavailableError(
                    f"cannot serve HTTP on {self._host}:{self.port}: {error or 'server exited'}"
                    f" (is the port in use? pass {self._flag})"
                )
            if await _accepts(connect_host, self.port):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise UnavailableError(f"HTTP server on {self._host}:{self.port} did not start in time")
            await asyncio.sleep(0.02)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def aclose(self, timeout_s: float) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            self._server.stop()
        try:
            await within(task, timeout_s)
        except TimeoutError:
            # the timeout has cancelled the serve task: the remaining connections are cut
            logger.info("closed the connections still open after %.1f s", timeout_s)
        except Exception:
            logger.exception("HTTP server failed while stopping")


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ensure_port_free(host: str, port: int, flag: str) -> None:
    """Fail fast if the port is taken: Granian binds with SO_REUSEPORT on Linux, so a second
    `fnplane up` on the same port would otherwise silently share it with the first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UnavailableError(
                f"cannot listen on {host}:{port}: {error.strerror} (is another server using the port? "
                f"pass {flag})"
            ) from None


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await within(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await within(writer.wait_closed(), 1.0)
    except (OSError, TimeoutError):
        pass
    return True
