"""What the supervisors here share (`fnplane up`'s Platform, the roles run alone): the undo stack each
started part pushes its stop on, and the bounded probe behind every `GET /health` check."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fnplane.shared.loop import within

logger = logging.getLogger(__name__)

Closer = tuple[str, Callable[[], Awaitable[None]], float]


class UndoStack:
    """Stops pushed last run first, each within its timeout; one that fails or hangs is logged and
    the rest still run."""

    def __init__(self, default_timeout_s: float) -> None:
        self._default_timeout_s = default_timeout_s
        self._closers: list[Closer] = []

    def push(self, name: str, close: Callable[[], Awaitable[None]], timeout_s: float | None = None) -> None:
        self._closers.append((name, close, timeout_s or self._default_timeout_s))

    async def unwind(self) -> None:
        while self._closers:
            name, close, timeout_s = self._closers.pop()
            logger.debug("stopping %s", name)
            try:
                await within(close(), timeout_s)
            except TimeoutError:
                logger.error("stopping %s took too long; moving on", name)
            except Exception:  # the supervisor: log and keep stopping the rest
                logger.exception("stopping %s failed", name)


async def probe(check: Awaitable[str], timeout_s: float) -> str:
    """A health check's answer within `timeout_s`: its own, "timed out", or "failed: <error>"."""
    try:
        return await within(check, timeout_s)
    except TimeoutError:
        return "timed out"
    except Exception as error:  # a health probe reports, it never raises
        return f"failed: {type(error).__name__}"
