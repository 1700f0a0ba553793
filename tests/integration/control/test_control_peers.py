"""Control-plane replicas tell each other over the real, closed bus (bus/control_peers.py): a wake of
the reconciler reaches the others, and what one autoscaler learns (agents' load, wakes) is recorded
by the other autoscalers, each replica on its own control credential."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import polling
from closed_bus import ClosedBus
from fnplane.bus.connection import Client, connect
from fnplane.bus.control_peers import listen_to_peers, observation_broadcaster, reconcile_broadcaster
from fnplane.control.app import ControlApp, create_app
from fnplane.control.db.engine import open_database
from fnplane.control.settings import ControlSettings
from fnplane.shared import subjects
from fnplane.shared.models.compute import VersionLoad, WorkerMetrics

VERSION = "5d1c3a9e-0000-4000-8000-000000000001"
# a broadcast crosses one local nats-server: milliseconds; the bound is for a loaded CI machine, where
# 5 s once passed without the message (a lost one still fails)
DELIVERY_BOUND_S = 20.0


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[ClosedBus]:
    closed = ClosedBus(tmp_path / "bus")
    await closed.start()
    try:
        yield closed
    finally:
        await closed.aclose()


async def _replica(bus: ClosedBus, tmp_path: Path, name: str) -> tuple[ControlApp, Client, list[int]]:
    """A control app on its own SQLite, connected as `fnplane control` connects, listening to its peers;
    the list counts the reconcile broadcasts it heard."""
    nc = await connect(
        bus.url,
        f"control-{name}",
        credential=bus.credentials.control(),
        inbox_prefix=subjects.CONTROL_INBOX_PREFIX,
    )
    engine = await open_database(f"sqlite:///{tmp_path}/{name}.db")
    settings = ControlSettings(database_url="sqlite://", key_hash_secret="test-key-hash-secret")
    app = create_app(
        settings,
        engine,
        wake_peers=reconcile_broadcaster(nc),
        share_with_peers=observation_broadcaster(nc),
    )
    heard: list[int] = []
    await listen_to_peers(
        nc,
        on_reconcile=lambda: heard.append(1),
        on_observation=app.components.autoscaler.observe_from_peer,
        on_revoked=app.components.auth.authenticator.forget,
    )
    await nc.flush()
    return app, nc, heard


async def test_wakes_and_observations_reach_the_other_replica(bus: ClosedBus, tmp_path: Path) -> None:
    # one after the other: Alembic's migration context is global to the process
    a, nc_a, _ = await _replica(bus, tmp_path, "a")
    b, nc_b, heard_b = await _replica(bus, tmp_path, "b")
    try:
        await reconcile_broadcaster(nc_a)()
        await polling.wait_for(_count(heard_b, 1), DELIVERY_BOUND_S)

        # an agent's load report to A: B's autoscaler has the sample, A's has it once (its own echo
        # is recognised and skipped)
        report = WorkerMetrics(
            intervalSeconds=10.0,
            versions=[VersionLoad(functionVersionId=VERSION, instances=1, busyFraction=0.9, invoked=True)],
        )
        await a.components.autoscaler.record_metrics(report)

        async def b_has_the_sample() -> bool:
            return bool(b.components.autoscaler.store.samples(VERSION))

        await polling.wait_for(b_has_the_sample, DELIVERY_BOUND_S)
        assert b.components.autoscaler.store.samples(VERSION) == [pytest.approx(90.0)]
        assert b.components.autoscaler.store.recently_invoked(VERSION)
        await nc_a.flush()
        await asyncio.sleep(0.2)  # A's own broadcast came back to it by now
        assert a.components.autoscaler.store.samples(VERSION) == [pytest.approx(90.0)]
        assert len(a.components.autoscaler.store._reports[VERSION]) == 1

        # a request waiting for a version at B counts as an invocation at A
        other = "5d1c3a9e-0000-4000-8000-000000000002"
        await b.components.autoscaler.wake(other)

        async def a_knows_it_was_invoked() -> bool:
            return a.components.autoscaler.store.recently_invoked(other)

        await polling.wait_for(a_knows_it_was_invoked, DELIVERY_BOUND_S)
    finally:
        for nc in (nc_a, nc_b):
            await nc.close()
        for app in (a, b):
            await app.components.database.engine.dispose()


def _count(heard: list[int], count: int):  # type: ignore[no-untyped-def]
    async def predicate() -> bool:
        return len(heard) >= count

    return predicate
