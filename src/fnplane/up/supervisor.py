"""`Platform`: the whole of fnplane in one process, started and stopped in order.

Start order (each step's undo is pushed on a stack, so a failed start unwinds what already runs):

    embedded nats-server -> database (migrated) -> NATS client (cluster-change kicks, revocations)
    -> bootstrap (account, admin key, signing key) -> control app -> gateway -> HTTP server -> agent
    -> gRPC proxy

Stop order is the reverse, with a drain first: new invocations and /health get 503, running
invocations get `drain_timeout_s` to finish, then the agent stops every function process and worker
(while the control API still answers its last reports), then the HTTP port closes, the apps shut down,
the database closes, and the embedded nats-server stops last.

While the platform runs, an embedded nats-server that dies is restarted on the same port and store
(up/nats.py); every NATS client here (ours, the gateway's, the agent's, each worker's) reconnects to
the unchanged URL by itself. Only a server that keeps dying makes `failure()` report the platform dead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fnplane.bus.clusters import cluster_notifier
from fnplane.bus.connection import closed_for_good, connect
from fnplane.bus.revocations import revocation_publisher
from fnplane.bus.undeploys import undeploy_publisher
from fnplane.compute.agent import Agent
from fnplane.compute.settings import AgentSettings
from fnplane.control import state_metrics
from fnplane.control.app import ControlApp, create_app
from fnplane.control.auth.bootstrap import bootstrap
from fnplane.control.auth.credentials import new_api_key
from fnplane.control.auth.revocation import PublishRevoked
from fnplane.control.db.engine import check_database, open_database
from fnplane.control.settings import ControlSettings
from fnplane.invocation import openapi as gateway_openapi
from fnplane.invocation.app import Gateway, create_gateway_app, is_gateway_request
from fnplane.invocation.grpc.proxy import GrpcProxy
from fnplane.invocation.grpc.settings import GrpcSettings
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import metrics, subjects
from fnplane.up.asgi import Lifespan, PlatformApp, RequestLimits
from fnplane.up.bus_auth import BusCredentials, operator_keys
from fnplane.up.home import PlatformHome
from fnplane.up.metrics import MetricsServer
from fnplane.up.nats import EmbeddedNats
from fnplane.up.server import HeaderLimits, HttpServer, free_loopback_port
from fnplane.up.settings import UpSettings
from fnplane.up.undo import UndoStack, probe

logger = logging.getLogger(__name__)


class Platform:
    def __init__(self, settings: UpSettings, *, out: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.home = PlatformHome(settings.home)
        self._out = out
        self._undo = UndoStack(settings.stop_timeout_s + 5)
        self.nats_url: str | None = None
        self.admin_key: str | None = None
        self.database_url: str | None = None
        # where in-process clients (the agent) reach the control API: plain HTTP on loopback
        self.internal_url: str = settings.local_url
        # where the agent runs containerArgs
        self.workdir: Path = (settings.workdir or Path.cwd()).resolve()
        self._embedded_nats: EmbeddedNats | None = None
        self.bus_credentials = BusCredentials(None)
        self._engine: Any = None
        self._nats: Any = None
        self._control: Lifespan | None = None
        self._gateway: Lifespan | None = None
        self._http: HttpServer | None = None
        self._app: PlatformApp | None = None
        self.gateway: Gateway | None = None
        self.agent: Agent | None = None
        self.grpc_proxy: GrpcProxy | None = None
        self._started = False

    @property
    def url(self) -> str:
        return self.settings.local_url

    @property
    def grpc_target(self) -> str:
        """Where gRPC clients connect (`grpc.insecure_channel(target)`)."""
        host = self.settings.local_host
        return f"[{host}]:{self.settings.grpc_port}" if ":" in host else f"{host}:{self.settings.grpc_port}"

    # -- start ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.aclose()
            raise
        self._started = True

    async def _start(self) -> None:
        s = self.settings
        self.home.prepare()
        self._push("home", self._release_home)

        if s.nats_url:
            self.nats_url = s.nats_url
            self.bus_credentials = BusCredentials.for_external(
                s.nats_creds, s.nats_signing_key_file, s.nats_account
            )
        else:
            keys = operator_keys(self.home.path)
            self.bus_credentials = BusCredentials.for_embedded(keys)
            self._embedded_nats = EmbeddedNats(
                self.home.nats_dir,
                auth_config=keys.server_config(),
                executable=s.nats_server_path,
                start_timeout_s=s.nats_start_timeout_s,
                stop_timeout_s=s.stop_timeout_s,
                restart_limit=s.nats_restart_limit,
                stable_after_s=s.nats_restart_window_s,
            )
            self.nats_url = await self._embedded_nats.start()
            self._push("nats-server", self._embedded_nats.aclose)

        self.database_url = s.database_url or self.home.database_url
        self._engine = await open_database(self.database_url)  # UnavailableError: a failed start
        self._push("database", self._engine.dispose)

        control_settings = ControlSettings()
        overrides: dict[str, Any] = {"database_url": self.database_url}
        if not (control_settings.key_hash_secret or "").strip():
            overrides["key_hash_secret"] = self.home.key_hash_secret()
        control_settings = control_settings.model_copy(update=overrides)

        self._nats = await connect(
            self.nats_url,
            "fnplane-up",
            connect_timeout_s=s.nats_start_timeout_s,
            reconnect_wait_s=0.5,
            # an external server that never answers is a failed start, not a hang
            give_up_after_s=s.nats_start_timeout_s,
            credential=self.bus_credentials.control(),
            inbox_prefix=subjects.CONTROL_INBOX_PREFIX,
        )
        self._push("nats-client", self._close_nats)
        publish_revoked = revocation_publisher(self._nats)

        await self._bootstrap_admin_key(control_settings, publish_revoked)

        control_app = create_app(
            control_settings,
            self._engine,
            notify_cluster_changed=cluster_notifier(self._nats),
            publish_revoked=publish_revoked,
            publish_undeployed=undeploy_publisher(self._nats),
            # instance logs: the control plane asks the agents over NATS
            nats=self._nats,
            issue_worker_credentials=(
                self.bus_credentials.worker_credentials
                if self.bus_credentials.mints_worker_credentials
                else None
            ),
        )
        # one port, one document: GET /v3/openapi also lists the gateway's pexec/exec/queues/assets paths
        gateway_openapi.merge_into(control_app.openapi())
        self._control = Lifespan(control_app, "control")
        await self._control.startup(s.stop_timeout_s)
        self._push("control", lambda: self._shutdown_lifespan(self._control))

        # The agent cannot verify our certificate (it may name a public host, or be self-signed), so
        # with TLS in-process clients get a plain listener of their own on loopback.
        internal_port = free_loopback_port() if s.tls else None
        if internal_port is not None:
            self.internal_url = f"http://127.0.0.1:{internal_port}"
        gateway, claims = await self._start_gateway(control_app)

        limits = RequestLimits(
            api_per_credential=s.api_max_concurrent_per_credential,
            gateway_per_credential=s.gateway_max_concurrent_per_credential,
            body_idle_timeout_s=s.body_idle_timeout_s,
        )
        self._app = PlatformApp(self._control, self.health, gateway, claims, limits, self.facts)
        header_limits = HeaderLimits(
            http1_max_header_bytes=s.http1_max_header_bytes,
            http2_max_header_bytes=s.http2_max_header_bytes,
            http2_max_concurrent_streams=s.http2_max_concurrent_streams,
        )
        self._http = HttpServer(
            self._app,
            host=s.host,
            port=s.http_port,
            tls_cert=s.tls_cert,
            tls_key=s.tls_key,
            start_timeout_s=s.http_start_timeout_s,
            limits=header_limits,
        )
        http = self._http
        await http.start(s.local_host)
        self._push("http", lambda: http.aclose(s.http_stop_timeout_s))
        if internal_port is not None:
            internal = HttpServer(self._app, host="127.0.0.1", port=internal_port, limits=header_limits)
            await internal.start("127.0.0.1")
            self._push("internal-http", lambda: internal.aclose(s.http_stop_timeout_s))

        await self._start_agent(self.workdir)

        await self._start_grpc_proxy()

        if s.metrics_port is not None:
            await self._start_metrics(control_app, s.metrics_port)

        app = self._app
        self._push("drain", lambda: self._drain(app), s.drain_timeout_s + 5)

    async def _bootstrap_admin_key(
        self, control_settings: ControlSettings, publish_revoked: PublishRevoked
    ) -> None:
        """The admin key: FNPLANE_ADMIN_KEY, else the one in DIR/admin-key, else a new one (printed once).
        A FNPLANE_ADMIN_KEY other than the one in DIR/admin-key replaces it: the old one is revoked."""
        stored = self.home.stored_admin_key()
        key = self.settings.admin_key or stored or new_api_key()
        generated = self.settings.admin_key is None and stored is None
        await bootstrap(self._engine, control_settings, key, replaces=stored, publish_revoked=publish_revoked)
        if key != stored:
            self.home.store_admin_key(key)
        self.admin_key = key
        if generated:
            self._out(
                f"Admin API key (shown once; also stored in {self.home.admin_key_path}, mode 0600):\n  {key}"
            )

    async def _start_gateway(self, control_app: ControlApp) -> tuple[Lifespan, Callable[[Any], bool]]:
        assert self.nats_url is not None
        # workers download input assets from the loopback listener (plain HTTP, like the agent's calls)
        updates: dict[str, Any] = {"control_url": self.internal_url, "asset_base_url": self.internal_url}
        if self.settings.public_url:
            updates["public_url"] = self.settings.public_url
        gateway_settings = GatewaySettings().model_copy(update=updates)
        access_authority = control_app.components.access_authority
        self.gateway = create_gateway_app(
            gateway_settings, self.nats_url, access_authority, self.bus_credentials.gateway()
        )
        lifespan = self._gateway = Lifespan(self.gateway, "gateway")
        await lifespan.startup(self.settings.stop_timeout_s)
        self._push("gateway", lambda: self._shutdown_lifespan(lifespan))
        host_label = gateway_settings.host_label

        def claims(scope: Any) -> bool:
            return is_gateway_request(scope, host_label)

        return lifespan, claims

    async def _start_grpc_proxy(self) -> None:
        """The gRPC port, beside the gateway whose decisions and bus it shares; stopped before the agent
        (its sessions are closed while the workers holding them still run)."""
        assert self.gateway is not None
        s = self.settings
        self.grpc_proxy = GrpcProxy(
            self.gateway.service,
            self.gateway.bus,
            GrpcSettings(),
            host=s.host,
            port=s.grpc_port,
            tls_cert=s.tls_cert,
            tls_key=s.tls_key,
        )
        await self.grpc_proxy.start()
        proxy = self.grpc_proxy
        self._push("grpc-proxy", proxy.aclose)

    async def _start_agent(self, workdir: Path) -> None:
        agent_settings = AgentSettings().model_copy(
            update={
                "control_url": self.internal_url,
                "nats_url": self.nats_url,
                "token": self.admin_key,
                "workdir": workdir,
                "home": self.home.path,
                **({"backend": self.settings.backend} if self.settings.backend else {}),
            }
        )
        if self.settings.tls_key is not None:
            # a TLS key may lie in the working directory: a sandboxed function never sees it
            hidden = [*agent_settings.sandbox_hidden_paths, self.settings.tls_key]
            agent_settings = agent_settings.model_copy(update={"sandbox_hidden_paths": hidden})
        self.agent = Agent(agent_settings, self.bus_credentials.agent(agent_settings.cluster_name))
        await self.agent.start()
        # the agent gives each function process its grace period before SIGKILL, then reports; never
        # abandon it earlier, or function processes would outlive `fnplane up`
        grace_s = agent_settings.stop_grace_s + 2 * agent_settings.http_timeout_s + 10
        self._push("agent", self._stop_agent, max(self.settings.stop_timeout_s, grace_s))

    async def _start_metrics(self, control_app: ControlApp, port: int) -> None:
        """GET /metrics; the instance and queue gauges are read from the control plane and the bus
        when scraped."""
        database = control_app.components.database
        gateway = self.gateway
        assert gateway is not None

        async def platform_state() -> None:
            deployed = await state_metrics.refresh(database)
            depths = [(fid, vid, await gateway.bus.queue_depth(vid)) for fid, vid in deployed]
            metrics.QUEUE_DEPTH.clear()
            for function_id, version_id, depth in depths:
                metrics.QUEUE_DEPTH.labels(function_id, version_id).set(depth)

        server = MetricsServer(self.settings.host, port, [platform_state])
        await server.start(self.settings.local_host)
        self._push("metrics", server.aclose)

    def _push(self, name: str, close: Callable[[], Awaitable[None]], timeout_s: float | None = None) -> None:
        self._undo.push(name, close, timeout_s)

    # -- wiring ---------------------------------------------------------------------------------------

    # -- health ---------------------------------------------------------------------------------------

    async def health(self) -> dict[str, str]:
        timeout_s = self.settings.health_check_timeout_s
        checks = {
            "api": "ok" if self._control is not None and self._started else "starting",
            "gateway": "ok" if self.gateway is not None and self.gateway.ready else "not ready",
            "database": await probe(self._check_database(), timeout_s),
            "nats": await probe(self._check_nats(), timeout_s),
            "agent": await probe(self._check_agent(), timeout_s),
        }
        return checks

    def facts(self) -> dict[str, str]:
        """What /health reports besides its checks: `isolation`, how function processes are kept from
        the platform (`bubblewrap`, or `none`: the process backend is then for a single trusted user)."""
        if self.agent is None:
            return {}
        return {"isolation": self.agent.isolation}

    async def _check_database(self) -> str:
        if self._engine is None:
            return "not started"
        await check_database(self._engine)
        return "ok"

    async def _check_nats(self) -> str:
        if self._nats is None:
            return "not started"
        if not self._nats.is_connected:
            embedded = self._embedded_nats
            if embedded is not None and not embedded.running and embedded.failure is None:
                return "disconnected: the embedded nats-server is being restarted"
            return "disconnected"
        await self._nats.flush(timeout=self.settings.health_check_timeout_s)
        return "ok"

    async def _check_agent(self) -> str:
        if self.agent is None:
            return "not started"
        return "ok" if self.agent.ready else "not registered with the control plane"

    def failure(self) -> str | None:
        """Why the platform can no longer serve (a vital part died for good), else None.

        An embedded nats-server that exited is being restarted (meanwhile /health answers 503): only
        one that keeps dying is a failure. So is a NATS client of ours that the server closed on an
        error (`closed_for_good`): nats-py never reopens it.
        """
        if self._embedded_nats is not None and self._embedded_nats.failure:
            return self._embedded_nats.failure
        if self._http is not None and not self._http.running:
            return "the HTTP server stopped"
        return closed_for_good(
            {
                "control plane": self._nats,
                "gateway": self.gateway.bus.nc if self.gateway is not None else None,
                "agent": self.agent.nc if self.agent is not None else None,
            }
        )

    # -- stop -----------------------------------------------------------------------------------------

    async def _drain(self, app: PlatformApp) -> None:
        remaining = await app.drain(self.settings.drain_timeout_s)
        if remaining:
            logger.warning("%d invocation(s) still running after the drain window; cutting them", remaining)

    async def _stop_agent(self) -> None:
        if self.agent is not None:
            await self.agent.aclose()

    async def _release_home(self) -> None:
        self.home.release()

    async def _close_nats(self) -> None:
        nc, self._nats = self._nats, None
        if nc is not None:
            await nc.close()

    async def _shutdown_lifespan(self, lifespan: Lifespan | None) -> None:
        if lifespan is not None:
            await lifespan.shutdown(self.settings.stop_timeout_s)

    async def aclose(self) -> None:
        self._started = False
        await self._undo.unwind()
