"""`fnplane grpc-proxy`: the gRPC proxy alone in the foreground, for scale-out.

It joins a running platform with what a gateway on another host needs: the NATS URL and a gateway
credential (`--nats-creds`), and the control plane's URL, which it asks about access (the gateway's
HttpAccessAuthority). Sessions go through the bus only: no worker needs an address of this process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from fnplane.bus.connection import BusCredential
from fnplane.invocation.access_client import HttpAccessAuthority
from fnplane.invocation.app import create_gateway_app
from fnplane.invocation.grpc.proxy import GrpcProxy
from fnplane.invocation.grpc.settings import GrpcSettings
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import loop as event_loop
from fnplane.shared.errors import FnplaneError
from fnplane.telemetry import tracing
from fnplane.up.metrics import MetricsServer

logger = logging.getLogger(__name__)


async def serve_grpc_proxy(
    *,
    nats_url: str,
    control_url: str,
    host: str,
    port: int,
    nats_creds: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    metrics_port: int | None = None,
) -> int:
    """Run until SIGINT/SIGTERM; exit code 1 when it cannot start. With `metrics_port`, GET /metrics
    on `host`."""
    authority = HttpAccessAuthority(control_url)
    gateway_settings = GatewaySettings().model_copy(update={"control_url": control_url})
    credential: BusCredential = nats_creds
    # the gateway's parts without its HTTP endpoints: access, version choice, rate limits, wake, bus
    gateway = create_gateway_app(gateway_settings, nats_url, authority, credential)
    proxy: GrpcProxy | None = None
    metrics = MetricsServer(host, metrics_port) if metrics_port is not None else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await gateway.start()
        proxy = GrpcProxy(
            gateway.service,
            gateway.bus,
            GrpcSettings(),
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
        await proxy.start()
        if metrics is not None:
            await metrics.start(host)
        print(f"fnplane grpc-proxy is up at {host}:{port}, NATS at {nats_url}. Ctrl-C stops it.", flush=True)
        await stop.wait()
        return 0
    except (FnplaneError, OSError) as error:
        logger.error("fnplane grpc-proxy failed to start: %s", getattr(error, "detail", error))
        return 1
    finally:
        if metrics is not None:
            await metrics.aclose()
        if proxy is not None:
            await proxy.aclose()
        await gateway.aclose()
        await authority.aclose()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_grpc_proxy(**options: object) -> int:
    tracing.configure_tracing("fnplane-grpc-proxy")
    try:
        return event_loop.run(serve_grpc_proxy(**options))  # type: ignore[arg-type]
    finally:
        tracing.shutdown_tracing()
