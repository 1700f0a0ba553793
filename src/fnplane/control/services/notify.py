"""Telling agents that their assignments changed (`subjects.cluster_changed`).

The control plane itself has no NATS connection in unit tests; `fnplane up` sets `app.state.notify`
to an async callable that publishes the kick. A lost kick only delays the agent until its next poll,
so a failing notifier is logged, never raised into the API call that changed the assignments.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable

from fnplane.control.db.repositories import clusters as clusters_repo
from fnplane.control.db.repositories.transactions import Engine, reading

log = logging.getLogger(__name__)

Notify = Callable[[str], Awaitable[None]]

NOTIFY_TIMEOUT_S = 2.0


async def no_notify(cluster_name: str) -> None:
    """The default notifier: agents find changes by polling."""


async def notify_names(notify: Notify | None, names: Iterable[str]) -> None:
    if notify is None:
        return
    for name in sorted(set(names)):
        try:
            await asyncio.wait_for(notify(name), NOTIFY_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception:  # the kick is an optimisation: the agent polls anyway (see module docstring)
            log.warning("could not notify cluster %s of changed assignments", name, exc_info=True)


async def notify_clusters(engine: Engine, notify: Notify | None, cluster_ids: Iterable[str]) -> None:
    ids = set(cluster_ids)
    if notify is None or not ids:
        return
    async with reading(engine) as conn:
        names = [c.name for c in await clusters_repo.all_clusters(conn) if c.cluster_id in ids]
    await notify_names(notify, names)


# The reconciler of an engine registers itself here so that services which change what should run
# (set_target_instances, PATCH of min/max) can ask for an immediate pass instead of waiting a period.
_wakers: weakref.WeakKeyDictionary[Engine, Callable[[], None]] = weakref.WeakKeyDictionary()


def register_waker(engine: Engine, wake: Callable[[], None] | None) -> None:
    if wake is None:
        _wakers.pop(engine, None)
    else:
        _wakers[engine] = wake


def wake_reconciler(engine: Engine) -> None:
    wake = _wakers.get(engine)
    if wake is not None:
        wake()
