"""The control plane's state as gauges, read when scraped: instances per version and state, and
which versions are deployed (whose queue depth the composition root asks the gateway for)."""

from __future__ import annotations

from collections import Counter

from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.db.repositories import instances as instances_repo
from fnplane.control.db.repositories.transactions import Database
from fnplane.shared import metrics
from fnplane.shared.models.functions import FunctionStatus

# versions with a deployment, hence a work queue
DEPLOYED = [s.value for s in (FunctionStatus.ACTIVE, FunctionStatus.DEPLOYING, FunctionStatus.DEGRADED,
                              FunctionStatus.DEGRADING)]  # fmt: skip
STARTED = ("starting", "running")


async def refresh(database: Database) -> list[tuple[str, str]]:
    """Set the instance gauges from the database; the (function id, version id) of deployed versions."""
    async with database.reading() as conn:
        rows = await instances_repo.live(conn)
        versions = await functions_repo.versions_with_status(conn, DEPLOYED)
    by_state = Counter((r.function_id, r.version_id, r.state) for r in rows)
    deployed = sorted({(v.function_id, v.version_id) for v in versions})
    # series of versions gone since the last scrape disappear: clear, then set what is
    metrics.INSTANCES.clear()
    metrics.INSTANCES_CURRENT.clear()
    for function_id, version_id in {(r.function_id, r.version_id) for r in rows} | set(deployed):
        for state in instances_repo.LIVE_STATES:
            count = by_state.get((function_id, version_id, state), 0)
            metrics.INSTANCES.labels(function_id, version_id, state).set(count)
        started = sum(by_state.get((function_id, version_id, s), 0) for s in STARTED)
        metrics.INSTANCES_CURRENT.labels(function_id, version_id).set(started)
    return deployed
