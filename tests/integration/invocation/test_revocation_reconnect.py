"""A gateway that reconnected to NATS cannot know which revocations it missed: it forgets every grant.

The stack's control plane has no broadcast (create_app without publish_revoked), so a key deleted
through it stays in the gateway's cache (60 s here) — until the gateway's NATS connection comes back
after the server restarted, which flushes the cache: the next call is refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from invocation_stack import NATS_SERVER, spawn, wait_port

from fnplane.invocation.settings import GatewaySettings


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(auth_cache_ttl_s=60.0, worker_silence_s=5.0)


async def test_a_reconnected_gateway_forgets_every_cached_grant(stack, tmp_path):
    fn = await stack.deploy(name="rc", inference_url="/slow")
    port = await stack.function_process()
    await stack.worker(fn, port)
    expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    created = await stack.control.post(
        "/v1/keys",
        json={
            "description": "missed revocation",
            "expires_at": expires,
            "authorizations": {
                "policies": [
                    {"resources": [{"type": "account-functions", "id": "*"}], "scopes": ["invoke_function"]}
                ]
            },
        },
    )
    assert created.status_code == 200, created.text
    key = {"Authorization": f"Bearer {created.json()['value']}"}
    url = f"/v2/nvcf/pexec/functions/{fn['id']}"
    assert (await stack.client.post(url, headers=key, json={"seconds": 0})).status_code == 200

    # revoked without a broadcast reaching the gateway: its cached grant still serves
    assert (await stack.control.delete(f"/v1/keys/{created.json()['id']}")).status_code == 204
    assert (await stack.client.post(url, headers=key, json={"seconds": 0})).status_code == 200

    [server] = [p for p in stack.processes if p.args[0] == NATS_SERVER]
    os.kill(server.pid, signal.SIGKILL)
    server.wait(5)
    nats_port = int(stack.nats_url.rsplit(":", 1)[1])
    stack.processes.append(
        spawn([NATS_SERVER, "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", str(tmp_path / "nats")])
    )
    await wait_port(nats_port)

    deadline = time.monotonic() + 15  # well inside the 60 s the grant would otherwise live
    status = 200
    while time.monotonic() < deadline:
        status = (await stack.client.post(url, headers=key, json={"seconds": 0})).status_code
        if status == 401:
            break
        await asyncio.sleep(0.1)
    assert status == 401
