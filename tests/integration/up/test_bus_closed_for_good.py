"""A NATS client of `fnplane up` that the server closed on an error is a failure of the platform.

nats-py reconnects after a lost connection, but a connection the server closed with an error (here a
message over its max_payload) is closed for good: before, the gateway then answered 503 to every
invocation, and /health 503, until someone restarted the platform. Now `Platform.failure()` names it,
and `fnplane up`'s watch loop (up/runner.py) stops the platform with exit code 1 on any failure, so
that a process supervisor brings it back.

The platform runs in this process (a real embedded nats-server, SQLite, the gateway and the agent), so
that the test can make the gateway's own client send what no code of ours sends any more.
"""

from __future__ import annotations

import socket
from pathlib import Path

from fnplane.up.settings import UpSettings
from fnplane.up.supervisor import Platform
from polling import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_gateway_connection_the_server_closed_is_a_platform_failure(tmp_path: Path) -> None:
    settings = UpSettings(
        home=tmp_path / "home", http_port=free_port(), grpc_port=free_port(), workdir=tmp_path
    )
    platform = Platform(settings, out=lambda _: None)
    await platform.start()
    try:
        assert platform.failure() is None
        assert platform.gateway is not None
        nc = platform.gateway.bus.nc
        # a server whose limit is lower than the client believes: the publish leaves, the server
        # answers '-ERR Maximum Payload Violation' and closes the connection
        nc._max_payload = 64 * 1024 * 1024
        await nc.publish("fnplane.test.oversize", b"x" * (2 * 1024 * 1024))

        async def failure() -> str | None:
            return platform.failure()

        reason = await wait_for(failure, 10)
        assert reason.startswith("the gateway's NATS connection was closed by the server"), reason
        assert "maximum payload" in reason.lower(), reason
    finally:
        await platform.aclose()
