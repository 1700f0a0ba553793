"""The event loop every fnplane process runs on: uvloop when it is installed, asyncio's own otherwise.

uvloop matters on the invocation path: its transports make fewer and cheaper system calls, and its
`call_soon_threadsafe` coalesces wake-ups (Granian's I/O threads hand every ASGI event to the loop
through it). `FNPLANE_EVENT_LOOP=asyncio` forces the standard loop (debugging, comparisons).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get("FNPLANE_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop of `loop_factory()`."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


async def within(awaitable: Awaitable[T], timeout_s: float | None) -> T:
    """`await awaitable`, cancelled with TimeoutError after `timeout_s`: what `asyncio.wait_for` does,
    without its Python 3.11 flaw. There, a cancel that arrives as the awaited thing finishes is
    swallowed (wait_for returns the result), so a loop waiting on an event never ends and its owner's
    `aclose` hangs (CI teardowns waited 120 s on the reconciler and the logs follower this way).
    `asyncio.timeout` counts cancellations and lets an outside one through; ruff bans `wait_for` in `src`.
    """
    async with asyncio.timeout(timeout_s):
        return await awaitable


def freeze_startup_objects() -> None:
    """Move everything alive after start-up out of the garbage collector's sight (`gc.freeze()`).

    A full collection walks every tracked object: with the control plane, the gateway and their
    libraries loaded that is over 100,000 objects and tens of milliseconds, paid by whichever request
    happens to trigger it (the p99 tail of the invocation benchmark). Modules, classes and long-lived
    services never become garbage, so they need not be scanned; cycles among objects created later
    are still collected.
    """
    gc.collect()
    gc.freeze()
