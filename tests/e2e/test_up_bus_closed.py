"""The embedded nats-server of a real `fnplane up` is closed: a client without a credential, or with
one signed by another operator, is refused; the platform's own parts (with theirs) are healthy, and
each worker got a credentials file of its own (0600), which its function's environment does not name.
"""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from pathlib import Path

import httpx
import nats
import pytest
from up_process import UpProcess, free_port

from fnplane.bus.credentials import OperatorKeys, UserCredential, decode_claims
from fnplane.shared import permissions
from fnplane.shared.permissions import Permissions

ECHO = Path(__file__).parents[2] / "examples" / "echo_server.py"


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


async def invoke_echo(url: str, admin_key: str) -> None:
    """Deploy the echo example with one instance and wait until a pexec call answers 200."""
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
    ) as client:
        created = await client.post(
            "/v2/nvcf/functions",
            json={
                "name": "closed-bus-echo",
                "inferenceUrl": "/echo",
                "inferencePort": 8000,
                "containerImage": "example/echo:1",
                "containerArgs": f"{sys.executable} {ECHO}",
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
        for _ in range(120):
            poll = {"NVCF-POLL-SECONDS": "5"}
            r = await client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"hello": "bus"}, headers=poll)
            if r.status_code == 200:
                return
            await asyncio.sleep(0.5)
    raise AssertionError("the function never answered over the closed bus")


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
    await invoke_echo(up.url, (home / "admin-key").read_text().strip())
    files = list((home / "agents" / "local" / "credentials").glob("*.creds"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


async def test_external_nats_with_a_credentials_file_and_the_account_signing_key(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    """`--nats-url URL --nats-creds FILE` on a NATS closed by another operator; with its account's
    signing key, workers still get credentials of their own."""
    keys = OperatorKeys.generate()
    config = tmp_path / "external.conf"
    config.write_text(keys.server_config())
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "nats-server"), "-c", str(config), "-a", "127.0.0.1",
        "-p", str(port), "-js", "-sd", str(tmp_path / "external-js"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        platform = keys.issuer().issue("platform", Permissions(publish=(">",), subscribe=(">",)))
        creds = tmp_path / "platform.creds"
        creds.write_text(platform.creds_file())
        seed = tmp_path / "account-signing.nk"
        seed.write_text(keys.account_signing)
        home = tmp_path / "home"
        env = {
            "FNPLANE_UP_NATS_SIGNING_KEY_FILE": str(seed),
            "FNPLANE_UP_NATS_ACCOUNT": keys.account_public_key,
        }
        up = start_up(
            home, env=env, args=["--nats-url", f"nats://127.0.0.1:{port}", "--nats-creds", str(creds)]
        )
        up.wait_healthy()
        await invoke_echo(up.url, (home / "admin-key").read_text().strip())
        [worker_creds] = list((home / "agents" / "local" / "credentials").glob("*.creds"))
        claims = decode_claims(UserCredential.parse(worker_creds.read_text()).jwt)
        assert claims["nats"]["issuer_account"] == keys.account_public_key
        assert ">" not in claims["nats"]["pub"]["allow"]
        assert "not isolated" not in up.stderr + up.stdout
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
