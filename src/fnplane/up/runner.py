"""`fnplane up` in the foreground: start the platform, wait for SIGINT/SIGTERM, stop everything."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from fnplane.shared import loop as event_loop
from fnplane.shared.errors import FnplaneError
from fnplane.shared.loop import within
from fnplane.telemetry import tracing
from fnplane.up.asgi import LifespanError
from fnplane.up.demo import run_demo
from fnplane.up.settings import UpSettings
from fnplane.up.supervisor import Platform

logger = logging.getLogger(__name__)

# how often the foreground loop checks that the vital parts (nats-server, HTTP server) still run
_WATCH_INTERVAL_S = 1.0


async def serve(settings: UpSettings, *, out: Callable[[str], None] = print) -> int:
    """Run until SIGINT/SIGTERM (exit code 0) or until a vital part dies (exit code 1)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    platform = Platform(settings, out=out)
    try:
        # a signal during the start stops it too (a start may wait, e.g. for an external NATS)
        starting = asyncio.create_task(platform.start(), name="start")
        stopped = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():
            out("fnplane is stopping ...")
            starting.cancel()  # the start undoes what it did (Platform.start)
            await asyncio.wait({starting})
            out("fnplane stopped.")
            return 0
        try:
            starting.result()
        except FnplaneError as error:
            logger.error("fnplane up failed to start: %s", error.detail)
            return 1
        except (LifespanError, OSError) as error:
            logger.error("fnplane up failed to start: %s", error)
            return 1
        event_loop.freeze_startup_objects()
        out(
            f"fnplane is up: API and gateway at {platform.url} (GET /health), "
            f"gRPC at {platform.grpc_target}, "
            f"NATS at {platform.nats_url}, database {_redact(platform.database_url or '')}. "
            "Ctrl-C stops everything."
        )
        demo = asyncio.create_task(_demo(platform, out), name="demo") if settings.demo else None
        failure: str | None = None
        while not stop.is_set():
            try:
                await within(stop.wait(), _WATCH_INTERVAL_S)
            except TimeoutError:
                failure = platform.failure()
                if failure:
                    logger.error("%s; stopping", failure)
                    break
        out("fnplane is stopping ...")
        if demo is not None:
            demo.cancel()
            await asyncio.wait({demo})
        await platform.aclose()
        out("fnplane stopped.")
        return 1 if failure else 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _demo(platform: Platform, out: Callable[[str], None]) -> None:
    """`--demo`: the echo example deployed through the platform's own API (up/demo.py)."""
    assert platform.admin_key is not None
    await run_demo(
        platform.internal_url,
        platform.admin_key,
        platform.workdir,
        public_url=platform.url,
        key_path=platform.home.admin_key_path,
        out=out,
        timeout_s=platform.settings.demo_timeout_s,
    )


def run_up(settings: UpSettings, *, out: Callable[[str], None] = print) -> int:
    # the gateway's and the gRPC proxy's spans (OTEL_* set); the workers configure their own
    tracing.configure_tracing("fnplane")
    try:
        return event_loop.run(serve(settings, out=out))
    finally:
        tracing.shutdown_tracing()


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
