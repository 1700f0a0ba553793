"""`GET /metrics` in the Prometheus text format, on its own port (`--metrics-port`).

Every process of the platform (`fnplane up`, `fnplane agent`, `fnplane grpc-proxy`) serves its own
registry: the counters and histograms its planes keep (`fnplane.shared.metrics`), its workers'
figures when it runs an agent (`fnplane.compute.worker_metrics`), and prometheus-client's process
collector (CPU, memory, open files). State the planes keep elsewhere (instances per version, queue
depth) is read when scraped, by the `refreshers` the composition root hands over, so a gauge is never
staler than the scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from fnplane.shared.asgi import Receive, Scope, Send
from fnplane.shared.loop import within
from fnplane.up.server import HttpServer

log = logging.getLogger(__name__)

Refresher = Callable[[], Awaitable[None]]
REFRESH_TIMEOUT_S = 5.0


class MetricsApp:
    def __init__(self, refreshers: Sequence[Refresher] = ()) -> None:
        self._refreshers = list(refreshers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            await _send(send, 404, b"not found: the metrics are at GET /metrics\n", b"text/plain")
            return
        for refresh in self._refreshers:
            try:
                await within(refresh(), REFRESH_TIMEOUT_S)
            except Exception as error:  # a gauge stays at its last value; the scrape still answers
                log.warning("metrics: %s failed: %r", getattr(refresh, "__name__", "refresh"), error)
        # OpenMetrics when the scraper asks for it: the only format that carries exemplars (the request
        # id of a latency observation)
        accept = next((v for k, v in scope.get("headers") or () if k == b"accept"), b"")
        if b"application/openmetrics-text" in accept:
            body = await asyncio.to_thread(openmetrics.generate_latest, REGISTRY)
            content_type = openmetrics.CONTENT_TYPE_LATEST
        else:
            body = await asyncio.to_thread(generate_latest, REGISTRY)
            content_type = CONTENT_TYPE_LATEST
        await _send(send, 200, body if scope["method"] == "GET" else b"", content_type.encode())


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MetricsServer:
    """The metrics port of one process."""

    def __init__(self, host: str, port: int, refreshers: Sequence[Refresher] = ()) -> None:
        self.port = port
        self._server = HttpServer(MetricsApp(refreshers), host=host, port=port, flag="--metrics-port")

    async def start(self, connect_host: str) -> None:
        await self._server.start(connect_host)
        log.info("metrics at http://%s:%d/metrics", connect_host, self.port)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        await self._server.aclose(timeout_s)
