"""fnplane on four hosts for the multi-host and fault tests (issue 14; docs/deploy.md), built from
network namespaces on this machine (netns.py, root only):

    c1, c2   `fnplane control` + `fnplane gateway` + `fnplane grpc-proxy`, and a NATS node each
    a1       `fnplane agent` (cluster gpu-a) and the third NATS node
    a2       `fnplane agent` (cluster gpu-b)

The NATS nodes form one JetStream cluster (every stream and bucket with 3 replicas:
FNPLANE_NATS_REPLICAS=3), closed by the operator keys `fnplane nats-creds` writes; every role gets its own
credential and the three nodes' URLs. The control replicas share a PostgreSQL reached from every host
through a forwarder on the bridge (the machine's server, or a private one the fault suite can restart).
Every role runs in a session of its own; `close()` ends them all, then the namespaces.

    with MultiHost(tmp_path, database_url) as hosts:
        hosts.control("c2").post(...)        # an httpx client of one control replica (admin key)
        hosts.gateway("c1").post(...)        # ... of one gateway
        hosts.kill_role("gateway-c1"); hosts.start_role("gateway-c1")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from netns import Forwarder, Network
from private_postgres import PrivatePostgres
from roles import RoleProcess, health, nats_material, shared_secret, status_of, wait_for
from sqlalchemy.engine import make_url
from up_process import REPO

from fnplane.bus.connection import connect
from fnplane.up.nats import find_nats_server

HOSTS = ("c1", "c2", "a1", "a2")
CONTROL_HOSTS = ("c1", "c2")
NATS_HOSTS = ("c1", "c2", "a1")
AGENTS = {"a1": "gpu-a", "a2": "gpu-b"}
# ports on each host's own address (every host has its own port space)
NATS_PORT, ROUTE_PORT, CONTROL_PORT, GATEWAY_PORT, GRPC_PORT = 14222, 16222, 8080, 8090, 8081
START_TIMEOUT_S = 90.0
# each agent offers six GPUs of one type (enough for every test of a module on one platform)
INVENTORY = [
    {
        "gpu": "L40S",
        "capacity": 6,
        "instanceTypes": [{"name": "LOCAL.GPU.L40S_1x", "default": True, "gpuCount": 1}],
    }
]


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (FNPLANE_TEST_POSTGRES_URL), dropped afterwards."""
    admin = make_url(os.environ.get("FNPLANE_TEST_POSTGRES_URL") or "postgresql://root@127.0.0.1:5432/test")
    name = f"fnplane_multihost_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(
            host=admin.host, port=admin.port or 5432, user=admin.username, password=admin.password,
            database=admin.database,
        )  # fmt: skip
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class MultiHost:
    def __init__(
        self, directory: Path, database_url: str | None, *, env: dict[str, str] | None = None
    ) -> None:
        """`database_url`: the machine's PostgreSQL (forwarded to the bridge); None: a private server
        on the bridge (`self.postgres`), which a test may restart."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.net = Network(list(HOSTS))
        self.roles: dict[str, RoleProcess] = {}
        self.nats: dict[str, subprocess.Popen[bytes]] = {}
        self._forwarder: Forwarder | None = None
        self.postgres: PrivatePostgres | None = None
        self._extra_env = env or {}
        self._role_args: dict[str, tuple[str, list[str], dict[str, str]]] = {}
        # every role process ever started (restarts too), for close()
        self._started: list[RoleProcess] = []
        try:
            self._start(database_url)
        except BaseException:
            self.close()
            raise

    # --- addresses ---------------------------------------------------------------------------------

    def control_url(self, host: str) -> str:
        return f"http://{self.net.address(host)}:{CONTROL_PORT}"

    def gateway_url(self, host: str) -> str:
        return f"http://{self.net.address(host)}:{GATEWAY_PORT}"

    def grpc_target(self, host: str) -> str:
        return f"{self.net.address(host)}:{GRPC_PORT}"

    @property
    def nats_urls(self) -> str:
        return ",".join(f"nats://{self.net.address(h)}:{NATS_PORT}" for h in NATS_HOSTS)

    def _control_urls(self, first: str) -> str:
        """Every control replica, `first`'s own host first (clients fail over: shared/control_urls.py)."""
        order = (
            [first, *(h for h in CONTROL_HOSTS if h != first)] if first in CONTROL_HOSTS else CONTROL_HOSTS
        )
        return ",".join(self.control_url(h) for h in order)

    def control(self, host: str, timeout_s: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.control_url(host), headers=self.auth, timeout=timeout_s)

    def gateway(self, host: str, timeout_s: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.gateway_url(host), headers=self.auth, timeout=timeout_s)

    # --- start -------------------------------------------------------------------------------------

    def _start(self, database_url: str) -> None:
        d = self.directory
        keys = d / "operator"
        nats_material(keys, "server-config", d / "nats-auth.conf")
        for role in ("control", "gateway"):
            nats_material(keys, role, d / f"{role}.creds")
        for cluster in AGENTS.values():
            nats_material(keys, "agent", d / f"agent-{cluster}.creds", "--cluster-name", cluster)
        told = nats_material(keys, "signing-key", d / "signing.seed")
        account = re.search(r"--nats-account (A[A-Z0-9]+)", told)
        assert account, told
        self._account = account.group(1)
        self.admin_key = f"nvapi-{secrets.token_urlsafe(32)}"
        self.auth = {"Authorization": f"Bearer {self.admin_key}"}
        shared_secret(d / "admin-key", self.admin_key)
        shared_secret(d / "key-hash-secret", secrets.token_urlsafe(48))

        if database_url is None:
            self.postgres = PrivatePostgres(self.net.gateway, 5432)
            self.database_url = self.postgres.url
        else:
            url = make_url(database_url)
            port = url.port or 5432
            self._forwarder = Forwarder((self.net.gateway, port), (url.host or "127.0.0.1", port))
            self.database_url = url.set(host=self.net.gateway).render_as_string(hide_password=False)

        for host in NATS_HOSTS:
            self.start_nats(host)
        self._wait_for_jetstream()
        self._environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FNPLANE_")},
            "FNPLANE_NATS_REPLICAS": "3",
            **self._extra_env,
        }
        for host in CONTROL_HOSTS:
            self._define_control(host)
            self.start_role(f"control-{host}")
            # one at a time: the first migrates and bootstraps (the others wait on its locks anyway)
            wait_for(
                lambda h=host: health(self.control_url(h)),
                START_TIMEOUT_S,
                f"control on {host}",
                *self.roles.values(),
            )
        for host in CONTROL_HOSTS:
            self._define_gateway(host)
            self.start_role(f"gateway-{host}")
            self._define_grpc_proxy(host)
            self.start_role(f"grpc-proxy-{host}")
        for host in AGENTS:
            self._define_agent(host)
            self.start_role(f"agent-{host}")
        for host in CONTROL_HOSTS:
            wait_for(
                lambda h=host: health(self.gateway_url(h)),
                START_TIMEOUT_S,
                f"gateway on {host}",
                *self.roles.values(),
            )
        wait_for(self._agents_registered, START_TIMEOUT_S, "both agents registered", *self.roles.values())

    def _agents_registered(self) -> bool:
        with self.control("c1") as client:
            groups = client.get("/v2/nvcf/clusterGroups").json()["clusterGroups"]
        names = {cluster["name"] for group in groups for cluster in group.get("clusters", [])}
        return set(AGENTS.values()) <= names

    def nats_config(self, host: str) -> Path:
        address = self.net.address(host)
        routes = ", ".join(
            f"nats-route://{self.net.address(h)}:{ROUTE_PORT}" for h in NATS_HOSTS if h != host
        )
        store = self.directory / f"js-{host}"
        config = self.directory / f"nats-{host}.conf"
        config.write_text(
            f"server_name: n-{host}\n"
            f"listen: {address}:{NATS_PORT}\n"
            f'jetstream {{ store_dir: "{store}", max_memory_store: 256MB, max_file_store: 100GB }}\n'
            f"cluster {{ name: fnplane, listen: {address}:{ROUTE_PORT}, routes: [{routes}] }}\n"
            + (self.directory / "nats-auth.conf").read_text()
        )
        return config

    def start_nats(self, host: str) -> None:
        config = self.nats_config(host)
        with (self.directory / f"nats-{host}.log").open("ab") as log:
            self.nats[host] = self.net.popen(
                host,
                [str(find_nats_server()), "-c", str(config)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def kill_nats(self, host: str) -> None:
        process = self.nats.pop(host)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def _wait_for_jetstream(self) -> None:
        """Until the cluster has a JetStream meta leader (a gateway's credential can read its account)."""

        async def ready() -> bool:
            try:
                nc = await connect(
                    self.nats_urls,
                    "multihost-probe",
                    credential=self.directory / "gateway.creds",
                    connect_timeout_s=2.0,
                )
            except Exception:
                return False
            try:
                await nc.jetstream(timeout=2.0).account_info()
                return True
            except Exception:
                return False
            finally:
                await nc.close()

        wait_for(lambda: asyncio.run(ready()), START_TIMEOUT_S, "the NATS cluster's JetStream")

    def _define_control(self, host: str) -> None:
        d = self.directory
        self._role_args[f"control-{host}"] = (host, [
            "control", "--host", self.net.address(host), "--http-port", str(CONTROL_PORT),
            "--database-url", self.database_url, "--nats-url", self.nats_urls,
            "--nats-creds", str(d / "control.creds"), "--nats-signing-key-file", str(d / "signing.seed"),
            "--nats-account", self._account, "--key-hash-secret-file", str(d / "key-hash-secret"),
        ], {"FNPLANE_ADMIN_KEY": self.admin_key, "FNPLANE_CONTROL_LEASE_POLL_INTERVAL_S": "1.0"})  # fmt: skip

    def _define_gateway(self, host: str) -> None:
        self._role_args[f"gateway-{host}"] = (host, [
            "gateway", "--host", self.net.address(host), "--http-port", str(GATEWAY_PORT),
            "--nats-url", self.nats_urls, "--nats-creds", str(self.directory / "gateway.creds"),
            "--control-url", self._control_urls(host),
        ], {})  # fmt: skip

    def _define_grpc_proxy(self, host: str) -> None:
        self._role_args[f"grpc-proxy-{host}"] = (host, [
            "grpc-proxy", "--host", self.net.address(host), "--grpc-port", str(GRPC_PORT),
            "--nats-url", self.nats_urls, "--nats-creds", str(self.directory / "gateway.creds"),
            "--control-url", self._control_urls(host),
        ], {})  # fmt: skip

    def _define_agent(self, host: str) -> None:
        cluster = AGENTS[host]
        self._role_args[f"agent-{host}"] = (host, [
            "agent", "--nats-url", self.nats_urls,
            "--nats-creds", str(self.directory / f"agent-{cluster}.creds"),
            "--control-url", self._control_urls("c1" if host == "a1" else "c2"),
            "--token-file", str(self.directory / "admin-key"), "--cluster-name", cluster,
            "--home", str(self.directory / f"agent-{host}"), "--workdir", str(REPO),
        ], {
            "FNPLANE_AGENT_INVENTORY": json.dumps(INVENTORY),
            "FNPLANE_AGENT_DISCOVER_GPUS": "false",
            "FNPLANE_AGENT_SANDBOX_READ_ONLY_PATHS": json.dumps([str(REPO)]),
            "FNPLANE_AGENT_SANDBOX_SHARED_PATHS": json.dumps([str(self.directory)]),
            "FNPLANE_AGENT_HEARTBEAT_INTERVAL_S": "1.0",
            "FNPLANE_AGENT_POLL_INTERVAL_S": "1.0",
        })  # fmt: skip

    def deploy(
        self,
        body: dict,
        instances: int,
        *,
        register_at: str = "c1",
        deploy_at: str = "c2",
        concurrency: int = 4,
        clusters: list[str] | None = None,
    ) -> tuple[str, str]:
        """A function registered through one control replica and deployed through another (`instances`
        of LOCAL.GPU.L40S_1x), once ACTIVE: (function id, version id)."""
        with self.control(register_at) as first, self.control(deploy_at) as other:
            created = first.post("/v2/nvcf/functions", json=body)
            assert created.status_code == 200, created.text
            fid, vid = created.json()["function"]["id"], created.json()["function"]["versionId"]
            spec: dict[str, Any] = {
                "gpu": "L40S",
                "instanceType": "LOCAL.GPU.L40S_1x",
                "minInstances": instances,
                "maxInstances": instances,
                "maxRequestConcurrency": concurrency,
            }
            if clusters:
                spec["clusters"] = clusters
            deployed = other.post(
                f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}",
                json={"deploymentSpecifications": [spec]},
            )
            assert deployed.status_code == 200, deployed.text
            wait_for(
                lambda: status_of(other, fid, vid) == "ACTIVE",
                START_TIMEOUT_S,
                "ACTIVE",
                *self.roles.values(),
            )

            def all_running() -> bool:
                version = other.get(f"/v2/nvcf/functions/{fid}/versions/{vid}").json()["function"]
                active = version.get("activeInstances") or ()
                return sum(1 for i in active if i["instanceStatus"] == "RUNNING") >= instances

            # ACTIVE comes with the first healthy instance: a test that counts instances waits for all
            wait_for(all_running, START_TIMEOUT_S, f"{instances} instances running", *self.roles.values())
        return fid, vid

    # --- roles -------------------------------------------------------------------------------------

    def start_role(self, name: str) -> RoleProcess:
        """Start (or start again) the role `name` ("gateway-c1", "agent-a2", ...) on its host; its
        output goes to `<name>.<n>.err` in the directory."""
        host, args, env = self._role_args[name]
        runs = sum(1 for role in self._started if role.name.startswith(f"{name}."))
        role = RoleProcess(
            f"{name}.{runs}",
            args,
            self.directory,
            {**self._environment, **env},
            prefix=self.net.command(host, []),
        )
        self._started.append(role)
        self.roles[name] = role
        return role

    def kill_role(self, name: str) -> None:
        self.roles.pop(name).kill()

    def wait_healthy(self, name: str, timeout_s: float = START_TIMEOUT_S) -> None:
        host = self._role_args[name][0]
        url = self.control_url(host) if name.startswith("control") else self.gateway_url(host)
        wait_for(lambda: health(url), timeout_s, f"{name} healthy", *self.roles.values())

    # --- stop --------------------------------------------------------------------------------------

    def close(self) -> None:
        for role in reversed(self._started):
            if role.alive():
                role.kill()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(role.process.pid, signal.SIGKILL)
        for host in list(self.nats):
            self.kill_nats(host)
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        if self.postgres is not None:
            self.postgres.close()
            self.postgres = None
        self.net.close()

    def __enter__(self) -> MultiHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
