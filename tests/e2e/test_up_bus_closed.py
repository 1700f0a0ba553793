"""The embedded nats-server of a real `fnplane up` is closed: a client without a credential, or with
one signed by another operator, is refused; the platform's own parts (with theirs) are healthy, and
each worker got a credentials file of its own (0600), which its function's environment does not name.
"""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import httpx
import nats
import pytest
from up_process import UpProcess

from fnplane.bus.credentials import OperatorKeys
from fnplane.shared import permissions


def nats_url(home: Path) -> str:
    [ports] = list((home / "nats" / "ports").glob("*.ports"))
    return str(json.loads(ports.read_text())["nats"][0])


async def raw_connect_answer(url: str) -> str:
    """What the server says to a bare CONNECT + PING (an open server answers PONG)."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5)).decode()
    finally:
        writer.close()


async def test_the_embedded_bus_refuses_clients_without_a_credential_of_ours(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    home = tmp_path / "home"
    up = start_up(home)
    up.wait_healthy()
    url = nats_url(home)

    answer = await raw_connect_answer(url)
    assert answer.startswith("-ERR") and "Authorization Violation" in answer, answer
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(url, allow_reconnect=False, connect_timeout=2)

    # a well-formed credential from another operator: refused as well
    foreign = OperatorKeys.generate().issuer().issue("intruder", permissions.gateway())
    creds = tmp_path / "foreign.creds"
    creds.write_text(foreign.creds_file())
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(url, user_credentials=str(creds), allow_reconnect=False, connect_timeout=2)

    # the keys stay with the platform: 0600 in DIR; the server's config names only public JWTs
    keys = home / "nats-keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    config = (home / "nats" / "nats-server.conf").read_text()
    assert "resolver: MEMORY" in config
    assert not any(seed in config for seed in json.loads(keys.read_text()).values())

    # a deployed function: its worker connects with a per-instance credentials file
    admin = (home / "admin-key").read_text().strip()
    async with httpx.AsyncClient(
        base_url=up.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    ) as client:
        created = await client.post(
            "/v2/nvcf/functions",
            json={
                "name": "closed-bus-echo",
                "inferenceUrl": "/echo",
                "inferencePort": 8000,
                "containerImage": "example/echo:1",
                "containerArgs": f"python {Path(__file__).parents[2] / 'examples' / 'echo_server.py'}",
            },
        )
        assert created.status_code == 200, created.text
        fn = created.json()["function"]
        spec = {"gpu": "L40S", "instanceType": "LOCAL.GPU.L40S_1x", "minInstances": 1, "maxInstances": 1}
        deployed = await client.post(
            f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}",
            json={"deploymentSpecifications": [spec]},
        )
        assert deployed.status_code == 200, deployed.text
        answer = None
        for _ in range(120):
            r = await client.post(
                f"/v2/nvcf/pexec/functions/{fn['id']}",
                json={"hello": "bus"},
                headers={"NVCF-POLL-SECONDS": "5"},
            )
            if r.status_code == 200:
                answer = r
                break
            await asyncio.sleep(0.5)
        assert answer is not None, "the function never answered over the closed bus"
    files = list((home / "agents" / "local" / "credentials").glob("*.creds"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
