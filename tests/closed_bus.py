"""The closed bus of `fnplane up`, for the test harnesses: the same keys, server config and credentials
`up/` builds (up/bus_auth.py, up/nats.py), never a copy of them.

    bus = ClosedBus(tmp_path)
    url = await bus.start()           # EmbeddedNats with the operator's auth config
    bus.credentials.gateway()         # the gateway's credential, minted as `fnplane up` mints it
    bus.worker_creds(vid, iid)        # a worker's .creds file, as the agent writes it
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import polling
from fnplane.bus.buckets import Buckets
from fnplane.bus.connection import Client, connect
from fnplane.bus.credentials import UserCredential
from fnplane.bus.topology import ensure_version_queue
from fnplane.compute.credentials import write_worker_credentials
from fnplane.shared import subjects, topology
from fnplane.up.bus_auth import BusCredentials, operator_keys
from fnplane.up.nats import EmbeddedNats, find_nats_server


class ClosedBus:
    def __init__(self, home: Path, *, restart_limit: int = 10) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.keys = operator_keys(home)
        self.credentials = BusCredentials.for_embedded(self.keys)
        self.server = EmbeddedNats(
            home / "nats", auth_config=self.keys.server_config(), restart_limit=restart_limit
        )
        self.url = ""

    async def start(self) -> str:
        self.url = await self.server.start()
        return self.url

    async def aclose(self) -> None:
        await self.server.aclose()

    async def kill(self) -> None:
        """SIGKILL the server (a crash); with restart_limit 0 it stays down until the test restarts it."""
        pid = self.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await polling.wait_for(self._stopped, 5)

    async def _stopped(self) -> bool:
        return not self.server.running

    def restart_command(self, port: int, store: Path) -> list[str]:
        """A nats-server closed as before (the same operator config) on `port`, with `store`."""
        config = self.home / "restart.conf"
        config.write_text(self.keys.server_config())
        return [str(find_nats_server()), "-c", str(config), "-a", "127.0.0.1", "-p", str(port), "-js",
                "-sd", str(store)]  # fmt: skip

    def worker_creds(self, version_id: str, instance_id: str) -> Path:
        """The instance's credentials file: minted by the control plane's issuer, written by the agent's
        code."""
        text = self.credentials.worker_credentials(version_id, instance_id)
        return write_worker_credentials(self.home / "agent", instance_id, text)

    def creds_file(self, name: str, credential: object) -> Path:
        """A component's credential as a 0600 .creds file (what `--nats-creds` takes)."""
        assert isinstance(credential, UserCredential)
        path = self.home / f"{name}.creds"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(credential.creds_file())
        return path

    async def gateway_client(self) -> Client:
        """A client with the gateway's grants (a test that publishes or inspects as a gateway would)."""
        return await connect(self.url, "test-gateway", credential=self.credentials.gateway())

    async def create_buckets(self) -> None:
        """The buckets a gateway creates at its start, for a test without a gateway: a worker's
        credential may only open them, and its instance is RUNNING only once it pulls."""
        nc = await self.gateway_client()
        try:
            await Buckets(nc.jetstream()).open(topology.buckets() + topology.gateway_buckets(), create=True)
        finally:
            await nc.close()

    async def agent_client(self, cluster_name: str = "local") -> Client:
        return await connect(
            self.url,
            f"test-agent-{cluster_name}",
            credential=self.credentials.agent(cluster_name),
            inbox_prefix=subjects.agent_inbox_prefix(cluster_name),
        )

    async def prepare_version(self, version_id: str) -> None:
        """What the agent does before it starts a worker: the version's queue exists."""
        nc = await self.agent_client()
        try:
            await ensure_version_queue(nc, version_id, 5.0)
        finally:
            await nc.close()
