"""The invocation stack, all real: nats-server, the control app (SQLite) with its AccessAuthority, the
gateway served by Granian on a free port, function processes (examples/inv_function.py) and workers
(RequestPuller in-process, or the worker process `python -m fnplane.compute.worker` for kill -9).

`stack` fixture -> InvocationStack:
    await stack.deploy(name, inference_url="/echo", max_concurrency=1) -> {"id", "versionId"} (ACTIVE)
    await stack.function_process() -> port
    await stack.worker(fn, port, **worker_settings) -> RequestPuller
    await stack.worker_process(fn, port, **env) -> subprocess.Popen
    stack.client -> httpx.AsyncClient on the gateway with the admin key; stack.url, stack.admin_key
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from closed_bus import ClosedBus
from fnplane.compute.worker.bus import WorkerBus
from fnplane.compute.worker.requests import RequestPuller, worker_id
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.compute.worker.slots import Slots
from fnplane.control.app import create_app
from fnplane.control.auth.bootstrap import bootstrap
from fnplane.control.db.engine import open_database
from fnplane.control.settings import ControlSettings
from fnplane.invocation.app import create_gateway_app
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared.models.compute import InstanceAssignment
from fnplane.up.server import HttpServer

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable
NATS_SERVER = str(Path(sys.executable).parent / "nats-server")
FUNCTION_SCRIPT = REPO / "examples" / "inv_function.py"
GPU = "L40S"
INSTANCE_TYPE = "LOCAL.GPU.L40S_1x"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise TimeoutError(f"port {port} did not open")


async def listens(proc: subprocess.Popen[bytes], port: int, timeout_s: float = 10.0) -> bool:
    """True once `proc` listens on `port`; False when it exited first (the port was taken)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(proc.pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                    return True
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the test function did not listen on port {port}")


def spawn(args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, **kw)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class InvocationStack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []
        self.pullers: list[RequestPuller] = []
        self.worker_buses: list[WorkerBus] = []
        self.nats_url = ""
        self.url = ""
        self.admin_key = ""
        self.gateway: Any = None
        self.authority: Any = None
        self.components: Any = None
        self.control: httpx.AsyncClient | None = None
        self.client: httpx.AsyncClient | None = None
        self._server: HttpServer | None = None
        self._engine: Any = None
        # restarts are the tests' to make (test_bus_restart), not the embedded server's
        self.bus = ClosedBus(tmp / "bus", restart_limit=0)

    async def start(self, gateway_settings: GatewaySettings) -> None:
        # the closed bus of `fnplane up`: every component below connects with its own credential
        self.nats_url = await self.bus.start()
        settings = ControlSettings(database_url=f"sqlite:///{self.tmp}/fnplane.db", key_hash_secret="test")
        self._engine = await open_database(settings.database_url)
        key = await bootstrap(self._engine, settings, None)
        assert key is not None
        self.admin_key = key
        control_app = create_app(settings, self._engine)
        self.control = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=control_app),
            base_url="http://control",
            headers={"Authorization": f"Bearer {key}"},
        )
        body = {
            "agentId": "agent-local",
            "group": "local",
            "region": "local",
            "inventory": [
                {
                    "gpu": GPU,
                    "capacity": 8,
                    "instanceTypes": [
                        {"name": INSTANCE_TYPE, "description": "L40S", "default": True, "gpuCount": 1}
                    ],
                }
            ],
        }
        r = await self.control.put("/v1/fnplane/clusters/local", json=body)
        assert r.status_code == 200, r.text
        self.components = control_app.components
        self.authority = control_app.components.access_authority
        self.gateway = create_gateway_app(
            gateway_settings, self.nats_url, self.authority, self.bus.credentials.gateway()
        )
        await self.gateway.start()
        http_port = free_port()
        self._server = HttpServer(self.gateway, host="127.0.0.1", port=http_port)
        await self._server.start("127.0.0.1")
        self.url = f"http://127.0.0.1:{http_port}"
        self.client = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60.0
        )

    async def deploy(
        self, name: str = "echo", inference_url: str = "/echo", max_concurrency: int = 1
    ) -> dict:
        assert self.control is not None
        r = await self.control.post(
            "/v2/nvcf/functions",
            json={
                "name": f"{name}-{uuid.uuid4().hex[:6]}",
                "inferenceUrl": inference_url,
                "inferencePort": 8000,
                "containerImage": "example/inv:1",
                "containerArgs": "python examples/inv_function.py",
            },
        )
        assert r.status_code == 200, r.text
        fn = r.json()["function"]
        spec = {
            "gpu": GPU,
            "instanceType": INSTANCE_TYPE,
            "minInstances": 0,
            "maxInstances": 1,
            "maxRequestConcurrency": max_concurrency,
        }
        r = await self.control.post(
            f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}",
            json={"deploymentSpecifications": [spec]},
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = await self.control.get(f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}")
            if r.json()["function"]["status"] == "ACTIVE":
                return {"id": fn["id"], "versionId": fn["versionId"], "name": fn["name"]}
            await asyncio.sleep(0.05)
        raise AssertionError(f"function never became ACTIVE: {r.text}")

    async def function_process(self, port: int | None = None) -> int:
        """The test function on `port` (else a free one), listening: its own socket, not whatever another
        test running beside this one took the port for between free_port() and the bind."""
        for _ in range(5):
            chosen = port or free_port()
            proc = spawn([PYTHON, str(FUNCTION_SCRIPT), str(chosen)], cwd=REPO)
            self.processes.append(proc)
            if await listens(proc, chosen):
                return chosen
            if port is not None:
                break
        raise RuntimeError(f"the test function could not listen on {port or 'a free port'}")

    def assignment(self, fn: dict, port: int, max_concurrency: int = 1) -> InstanceAssignment:
        return InstanceAssignment.model_validate(
            {
                "instanceId": f"inst-{uuid.uuid4().hex[:8]}",
                "functionId": fn["id"],
                "functionVersionId": fn["versionId"],
                "functionName": fn.get("name", "fn"),
                "ncaId": "nvcf-default",
                "desired": True,
                "state": "running",
                "gpu": GPU,
                "instanceType": INSTANCE_TYPE,
                "backend": "local",
                "region": "local",
                "inferenceUrl": "/echo",
                "inferencePort": port,
                "health": {
                    "protocol": "HTTP",
                    "uri": "/v2/health/ready",
                    "port": port,
                    "timeoutSeconds": 10,
                    "expectedStatusCode": 200,
                },
                "maxRequestConcurrency": max_concurrency,
            }
        )

    async def worker(self, fn: dict, port: int, max_concurrency: int = 1, **settings: Any) -> RequestPuller:
        base = {
            "ack_wait_s": 5.0,
            "progress_interval_s": 1.0,
            "request_root": str(self.tmp / "requests"),
        }
        base.update(settings)
        assignment = self.assignment(fn, port, max_concurrency)
        await self.bus.prepare_version(assignment.version_id)
        base.setdefault(
            "nats_creds", str(self.bus.worker_creds(assignment.version_id, assignment.instance_id))
        )
        worker_settings = WorkerSettings(**base)
        bus = await WorkerBus.connect(
            self.nats_url, assignment.version_id, worker_id(assignment), worker_settings
        )
        self.worker_buses.append(bus)
        puller = RequestPuller(
            bus, assignment, f"http://127.0.0.1:{port}", Slots(max_concurrency), worker_settings
        )
        await puller.start()
        puller.set_ready(True)
        self.pullers.append(puller)
        return puller

    async def worker_process(self, fn: dict, port: int, **env: str) -> subprocess.Popen[bytes]:
        environ = dict(os.environ)
        assignment = self.assignment(fn, port)
        await self.bus.prepare_version(assignment.version_id)
        creds = self.bus.worker_creds(assignment.version_id, assignment.instance_id)
        environ.update(
            {
                "FNPLANE_WORKER_ASSIGNMENT": assignment.model_dump_json(by_alias=True),
                "FNPLANE_WORKER_NATS_CREDS": str(creds),
                "FNPLANE_WORKER_FUNCTION_PORT": str(port),
                "FNPLANE_WORKER_NATS_URL": self.nats_url,
                "FNPLANE_WORKER_HEALTH_POLL_INTERVAL_S": "0.2",
                "FNPLANE_WORKER_REQUEST_ROOT": str(self.tmp / "requests"),
            }
        )
        environ.update(env)
        proc = spawn(
            [PYTHON, "-m", "fnplane.compute.worker"],
            cwd=REPO,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(proc)
        return proc

    async def aclose(self) -> None:
        for puller in self.pullers:
            await puller.aclose()
        for bus in self.worker_buses:
            await bus.close_connection()
        if self.client is not None:
            await self.client.aclose()
        if self._server is not None:
            await self._server.aclose(2.0)
        if self.gateway is not None:
            await self.gateway.aclose()
        if self.control is not None:
            await self.control.aclose()
        if self._engine is not None:
            await self._engine.dispose()
        for proc in reversed(self.processes):
            stop_process(proc)
        await self.bus.aclose()


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(auth_cache_ttl_s=0.5, worker_silence_s=5.0)


@pytest.fixture
async def stack(tmp_path: Path, gateway_settings: GatewaySettings) -> AsyncIterator[InvocationStack]:
    s = InvocationStack(tmp_path)
    try:
        await s.start(gateway_settings)
        yield s
    finally:
        await s.aclose()


def host_for(fn: dict, url: str, version: bool = False) -> str:
    domain = url.split("://", 1)[1]
    return (
        f"{fn['versionId']}.{fn['id']}.invocation.{domain}" if version else f"{fn['id']}.invocation.{domain}"
    )


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
