"""A real platform for the compute integration tests: nats-server, the control app on Granian, agents.

Everything runs for real: a `nats-server` child on a free port, the control app (SQLite, or the real
PostgreSQL through the `database_url` fixture) served by Granian on a free port, and `Agent`s that start
real function processes from `examples/` (in this process, or as a `fnplane agent` child process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

import polling
from closed_bus import ClosedBus
from fnplane.bus.clusters import cluster_notifier
from fnplane.bus.connection import connect
from fnplane.compute.agent import Agent
from fnplane.compute.backends.processes import marked_processes, terminate_processes
from fnplane.compute.settings import AgentSettings
from fnplane.control.app import ControlApp, create_app
from fnplane.control.auth.bootstrap import bootstrap
from fnplane.control.autoscaler import AutoscalerSettings
from fnplane.control.db.engine import open_database
from fnplane.control.settings import ControlSettings
from fnplane.shared import subjects
from fnplane.shared.models.compute import GpuInventory, InstanceTypeInventory
from fnplane.up.asgi import Lifespan
from fnplane.up.server import HttpServer

REPO = Path(__file__).resolve().parents[3]
PY = sys.executable
GPU = "L40S"
INSTANCE_TYPE = "LOCAL.GPU.L40S_1x"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def nats_server(tmp_path: Path) -> AsyncIterator[ClosedBus]:
    """The embedded nats-server of `fnplane up` (up/nats.py), closed as `fnplane up` closes it."""
    bus = ClosedBus(tmp_path / "bus")
    try:
        await bus.start()
        yield bus
    finally:
        await bus.aclose()


@dataclass
class Platform:
    url: str
    nats_url: str
    admin_key: str
    app: ControlApp
    client: httpx.AsyncClient
    home: Path
    agents: list[Agent]
    bus: ClosedBus
    # `fnplane agent` child processes and their agent ids
    agent_processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    process_agent_ids: list[str] = field(default_factory=list)

    def agent_settings(self, cluster_name: str, **overrides: Any) -> AgentSettings:
        values: dict[str, Any] = {
            "control_url": self.url,
            "nats_url": self.nats_url,
            # what `--nats-creds` takes: the agent's credential as a file
            "nats_creds": self.bus.creds_file(
                f"agent-{cluster_name}", self.bus.credentials.agent(cluster_name)
            ),
            "token": self.admin_key,
            "cluster_name": cluster_name,
            "home": self.home,
            "workdir": REPO,
            "discover_gpus": False,
            "startup_timeout_s": 20.0,
            "restart_backoff_initial_s": 0.1,
            "restart_backoff_max_s": 0.5,
            "stop_grace_s": 3.0,
            "health_poll_interval_s": 0.2,
            "health_recheck_interval_s": 0.5,
            "metrics_interval_s": 0.5,
            "heartbeat_interval_s": 1.0,
            "poll_interval_s": 1.0,
        }
        values.update(overrides)
        return AgentSettings(**values)

    async def start_agent(self, cluster_name: str = "local", *, capacity: int = 8, **overrides: Any) -> Agent:
        inventory = [
            GpuInventory(
                gpu=GPU,
                capacity=capacity,
                instanceTypes=[InstanceTypeInventory(name=INSTANCE_TYPE, default=True, gpuCount=1)],
            )
        ]
        agent = Agent(self.agent_settings(cluster_name, inventory=inventory, **overrides))
        await agent.start()
        self.agents.append(agent)
        assert agent.ready
        return agent

    def leftovers(self) -> list[Any]:
        agent_ids = {agent.agent_id for agent in self.agents} | set(self.process_agent_ids)
        return [p for agent_id in agent_ids for p, _ in marked_processes(agent_id)]

    async def start_agent_process(
        self, cluster_name: str = "local", *, env: dict[str, str] | None = None
    ) -> tuple[asyncio.subprocess.Process, str]:
        """`fnplane agent` as a child process (default fake pool), with more environment `env`; the
        process and its agent id."""
        settings = self.agent_settings(cluster_name)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("FNPLANE_")}
        for name in _AGENT_PROCESS_SETTINGS:
            environment[f"FNPLANE_AGENT_{name.upper()}"] = str(getattr(settings, name))
        # the credential travels in the environment, never on the command line
        environment["FNPLANE_AGENT_TOKEN"] = self.admin_key
        environment.update(env or {})
        process = await asyncio.create_subprocess_exec(
            str(Path(PY).parent / "fnplane"), "agent",
            "--nats-url", self.nats_url, "--nats-creds", str(settings.nats_creds),
            "--control-url", self.url,
            "--cluster-name", cluster_name, "--home", str(self.home), "--workdir", str(REPO),
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self.agent_processes.append(process)
        self.process_agent_ids.append(settings.effective_agent_id)
        return process, settings.effective_agent_id

    async def aclose_agent_processes(self) -> None:
        for process in self.agent_processes:
            if process.returncode is None:
                process.kill()
                await asyncio.wait_for(process.wait(), 10)
        # what a killed agent left behind, should the test have failed before a new agent swept it
        strays = [p for agent_id in self.process_agent_ids for p, _ in marked_processes(agent_id)]
        await terminate_processes(strays, 1.0)


# the thresholds a `fnplane agent` child takes from the environment (the rest are its flags)
_AGENT_PROCESS_SETTINGS = (
    "discover_gpus",
    "startup_timeout_s",
    "restart_backoff_initial_s",
    "restart_backoff_max_s",
    "stop_grace_s",
    "health_poll_interval_s",
    "health_recheck_interval_s",
    "metrics_interval_s",
    "heartbeat_interval_s",
    "poll_interval_s",
)


@contextlib.asynccontextmanager
async def platform(
    tmp_path: Path, database_url: str | None = None, *, autoscaler_settings: AutoscalerSettings | None = None
) -> AsyncIterator[Platform]:
    """The platform on `database_url` (SQLite in tmp_path when None)."""
    async with nats_server(tmp_path) as bus:
        nats_url = bus.url
        await bus.create_buckets()  # as the gateway of `fnplane up` does before any worker starts
        settings = ControlSettings(
            database_url=database_url or f"sqlite:///{tmp_path}/fnplane.db",
            key_hash_secret="test-secret",
            reconcile_interval_s=0.3,
        )
        engine = await open_database(settings.database_url)
        admin_key = await bootstrap(engine, settings, None)
        assert admin_key is not None
        # the control plane's connection and worker credentials, as `fnplane up` makes them
        nc = await connect(
            nats_url,
            "compute-stack",
            credential=bus.credentials.control(),
            inbox_prefix=subjects.CONTROL_INBOX_PREFIX,
        )
        app = create_app(
            settings,
            engine,
            notify_cluster_changed=cluster_notifier(nc),
            nats=nc,
            autoscaler_settings=autoscaler_settings,
            issue_worker_credentials=bus.credentials.worker_credentials,
        )
        lifespan = Lifespan(app, "control")
        await lifespan.startup(10)
        port = free_port()
        server = HttpServer(app, host="127.0.0.1", port=port)
        await server.start("127.0.0.1")
        url = f"http://127.0.0.1:{port}"
        client = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10)
        result = Platform(url, nats_url, admin_key, app, client, tmp_path / "home", [], bus)
        try:
            yield result
        finally:
            await asyncio.gather(*(a.aclose() for a in result.agents), return_exceptions=True)
            await result.aclose_agent_processes()
            await client.aclose()
            await server.aclose(5)
            await lifespan.shutdown(10)
            await nc.close()
            await engine.dispose()


# ---- API drivers --------------------------------------------------------------------------------------


async def create_function(client: httpx.AsyncClient, container_args: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": f"fn-{uuid.uuid4().hex[:8]}",
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "containerImage": "nvcr.io/example/echo:1.0",
        "containerArgs": container_args,
        **extra,
    }
    response = await client.post("/v2/nvcf/functions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["function"]


async def deploy(
    client: httpx.AsyncClient, fn: dict[str, Any], min_instances: int = 1, max_instances: int = 2
):
    spec = {
        "gpu": GPU,
        "instanceType": INSTANCE_TYPE,
        "minInstances": min_instances,
        "maxInstances": max_instances,
    }
    return await client.post(
        f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}",
        json={"deploymentSpecifications": [spec]},
    )


async def wait_for(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.1) -> Any:
    return await polling.wait_for(predicate, timeout_s, interval_s)


async def wait_status(
    client: httpx.AsyncClient, fn: dict[str, Any], status: str, timeout_s: float = 20.0
) -> dict[str, Any]:
    return await polling.wait_status(client, fn, status, timeout_s, interval_s=0.1)


def started_processes(agent_id: str, instance_id: str | None = None, *, role: str) -> list[psutil.Process]:
    """The processes the agent started (one per instance and role): the marked processes without the
    forks that share their marked environment (a sandbox's init is a fork of bwrap)."""
    marked = marked_processes(agent_id, instance_id, role=role)
    pids = {process.pid for process, _ in marked}
    return [process for process, _ in marked if _parent_pid(process) not in pids]


def _parent_pid(process: psutil.Process) -> int | None:
    try:
        return process.ppid()
    except psutil.Error:
        return None
