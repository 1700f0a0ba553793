"""`fnplane control` and `fnplane gateway`: one role of the platform alone in the foreground, any number
of replicas of each on one PostgreSQL and one NATS (docs/deploy.md).

    ControlServer: database (migrated) -> NATS client -> bootstrap (serialised across replicas)
                   -> control app (its lease, reconciler, autoscaler) -> peer broadcasts -> HTTP -> metrics
    GatewayServer: gateway (its NATS client) -> HTTP -> metrics

Each step pushes its undo; stop is the reverse, after a drain (new requests and /health get 503,
running ones get `drain_timeout_s`). `fnplane up` (supervisor.py) composes the same parts in one process.

Credentials: each role connects to NATS with its own `.creds` file (`fnplane nats-creds ROLE`, minted
from the operator keys); the control plane's key-hash secret is the same on every replica (it opens
the JWT signing keys kept in the database, so any replica verifies any token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from fnplane.bus.clusters import cluster_notifier
from fnplane.bus.connection import closed_for_good, connect
from fnplane.bus.control_peers import listen_to_peers, observation_broadcaster, reconcile_broadcaster
from fnplane.bus.revocations import revocation_publisher
from fnplane.bus.undeploys import undeploy_publisher
from fnplane.control import state_metrics
from fnplane.control.app import ControlApp, create_app
from fnplane.control.auth.bootstrap import bootstrap
from fnplane.control.db.engine import check_database, open_database
from fnplane.control.db.lease import exclusively
from fnplane.control.settings import ControlSettings
from fnplane.invocation import openapi as gateway_openapi
from fnplane.invocation.access_client import HttpAccessAuthority
from fnplane.invocation.app import Gateway, create_gateway_app, is_gateway_request
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import loop as event_loop
from fnplane.shared import metrics, revocations, subjects
from fnplane.shared.errors import FnplaneError
from fnplane.shared.loop import within
from fnplane.telemetry import tracing
from fnplane.up.asgi import Lifespan, LifespanError, PlatformApp, RequestLimits
from fnplane.up.bus_auth import BusCredentials
from fnplane.up.home import write_secret
from fnplane.up.metrics import MetricsServer, Refresher
from fnplane.up.role_settings import ControlServerSettings, GatewayServerSettings, RoleFields
from fnplane.up.runner import _redact
from fnplane.up.server import HeaderLimits, HttpServer
from fnplane.up.undo import UndoStack, probe

logger = logging.getLogger(__name__)

# how often the foreground loop checks that the HTTP server still runs
_WATCH_INTERVAL_S = 1.0


class _RoleServer:
    """The HTTP port, the undo stack, the drain and /health every role shares."""

    role = "role"

    def __init__(self, settings: RoleFields, out: Callable[[str], None]) -> None:
        self._server_settings = settings
        self._out = out
        self._undo = UndoStack(settings.stop_timeout_s + 5)
        self._http: HttpServer | None = None
        self._app: PlatformApp | None = None
        self._started = False

    @property
    def url(self) -> str:
        return self._server_settings.local_url

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.aclose()
            raise
        self._started = True

    async def _start(self) -> None:
        raise NotImplementedError

    async def _serve_http(self, app: PlatformApp) -> None:
        s = self._server_settings
        self._app = app
        self._http = HttpServer(
            app,
            host=s.host,
            port=s.http_port,
            tls_cert=s.tls_cert,
            tls_key=s.tls_key,
            start_timeout_s=s.http_start_timeout_s,
            limits=HeaderLimits(
                http1_max_header_bytes=s.http1_max_header_bytes,
                http2_max_header_bytes=s.http2_max_header_bytes,
                http2_max_concurrent_streams=s.http2_max_concurrent_streams,
            ),
        )
        http = self._http
        await http.start(s.local_host)
        self._push("http", lambda: http.aclose(3.0))
        if s.metrics_port is not None:
            metrics_server = MetricsServer(s.host, s.metrics_port, self._metrics_refreshers())
            await metrics_server.start(s.local_host)
            self._push("metrics", metrics_server.aclose)
        self._push("drain", self._drain, s.drain_timeout_s + 5)

    def _metrics_refreshers(self) -> list[Refresher]:
        """What to read when /metrics is scraped (state kept elsewhere)."""
        return []

    def _limits(self) -> RequestLimits:
        s = self._server_settings
        return RequestLimits(
            api_per_credential=s.max_concurrent_per_credential,
            gateway_per_credential=s.max_concurrent_per_credential,
            body_idle_timeout_s=s.body_idle_timeout_s,
        )

    async def _drain(self) -> None:
        if self._app is not None:
            remaining = await self._app.drain(self._server_settings.drain_timeout_s)
            if remaining:
                logger.warning("%d request(s) still running after the drain window; cutting them", remaining)

    def failure(self) -> str | None:
        if self._http is not None and not self._http.running:
            return "the HTTP server stopped"
        return closed_for_good(self._bus_clients())

    def _bus_clients(self) -> dict[str, Any]:
        """This role's NATS clients by what they are for (`failure` reports one the server closed)."""
        return {}

    async def _shutdown_lifespan(self, lifespan: Lifespan) -> None:
        await lifespan.shutdown(self._server_settings.stop_timeout_s)

    def _push(self, name: str, close: Callable[[], Awaitable[None]], timeout_s: float | None = None) -> None:
        self._undo.push(name, close, timeout_s)

    async def aclose(self) -> None:
        self._started = False
        await self._undo.unwind()


class ControlServer(_RoleServer):
    """One control-plane replica: the API on its port, the once-only loops while it holds the lease."""

    role = "control"

    def __init__(self, settings: ControlServerSettings, *, out: Callable[[str], None] = print) -> None:
        super().__init__(settings, out)
        self.settings = settings
        self._engine: Any = None
        self._nats: Any = None
        self.control_app: ControlApp | None = None

    async def _start(self) -> None:
        s = self.settings
        bus = BusCredentials.for_external(s.nats_creds, s.nats_signing_key_file, s.nats_account)
        control_settings = ControlSettings()
        overrides: dict[str, Any] = {"database_url": s.database_url}
        if s.key_hash_secret_file is not None:
            overrides["key_hash_secret"] = s.key_hash_secret_file.read_text().strip()
        control_settings = control_settings.model_copy(update=overrides)
        control_settings.require_key_hash_secret()  # refused before anything is opened

        self._engine = await open_database(s.database_url)
        self._push("database", self._engine.dispose)
        if self._engine.dialect.name == "sqlite":
            logger.warning("SQLite: run one control replica only (replicas share a PostgreSQL database)")

        self._nats = await connect(
            s.nats_url,
            "fnplane-control",
            connect_timeout_s=s.nats_connect_timeout_s,
            reconnect_wait_s=0.5,
            credential=bus.control(),
            inbox_prefix=subjects.CONTROL_INBOX_PREFIX,
            on_reconnected=self._forget_every_credential,
        )
        self._push("nats-client", self._close_nats)
        publish_revoked = revocation_publisher(self._nats)

        # replicas starting together on an empty database: one creates the account and the keys
        async with exclusively(self._engine):
            created = await bootstrap(
                self._engine, control_settings, s.admin_key, publish_revoked=publish_revoked
            )
        if created is not None and s.admin_key is None:
            if s.admin_key_file is not None:
                write_secret(s.admin_key_file, created)
                self._out(f"Admin API key created and written to {s.admin_key_file} (mode 0600).")
            else:
                self._out(f"Admin API key (shown once):\n  {created}")

        self.control_app = control_app = create_app(
            control_settings,
            self._engine,
            notify_cluster_changed=cluster_notifier(self._nats),
            publish_revoked=publish_revoked,
            publish_undeployed=undeploy_publisher(self._nats),
            nats=self._nats,
            issue_worker_credentials=bus.worker_credentials if bus.mints_worker_credentials else None,
            wake_peers=reconcile_broadcaster(self._nats),
            share_with_peers=observation_broadcaster(self._nats),
        )
        gateway_openapi.merge_into(control_app.openapi())
        lifespan = Lifespan(control_app, "control")
        await lifespan.startup(s.stop_timeout_s)
        self._push("control", lambda: self._shutdown_lifespan(lifespan))
        components = control_app.components
        subscriptions = await listen_to_peers(
            self._nats,
            on_reconcile=components.reconciler.wake_from_peer,
            on_observation=components.autoscaler.observe_from_peer,
            on_revoked=components.auth.authenticator.forget,
        )

        async def unsubscribe() -> None:
            for subscription in subscriptions:
                await subscription.unsubscribe()

        self._push("peer-broadcasts", unsubscribe)
        await self._serve_http(PlatformApp(lifespan, self.health, None, _never, self._limits(), self.facts))

    def _bus_clients(self) -> dict[str, Any]:
        return {"control plane": self._nats}

    def _metrics_refreshers(self) -> list[Refresher]:
        async def platform_state() -> None:
            # the instance gauges come from the database: only the lease holder reports them, so that
            # a sum over the replicas counts each instance once
            if self.control_app is None or not self.holds_lease:
                metrics.INSTANCES.clear()
                metrics.INSTANCES_CURRENT.clear()
                return
            await state_metrics.refresh(self.control_app.components.database)

        return [platform_state]

    async def _forget_every_credential(self) -> None:
        """Revocations broadcast while we were disconnected are lost (core NATS): resolve afresh."""
        if self.control_app is not None:
            self.control_app.components.auth.authenticator.forget(revocations.EVERYTHING)

    @property
    def holds_lease(self) -> bool:
        return self.control_app is not None and self.control_app.components.lease.held

    def facts(self) -> dict[str, str]:
        """/health also says whether this replica runs the once-only loops: `lease` held or standby."""
        return {"role": self.role, "lease": "held" if self.holds_lease else "standby"}

    async def health(self) -> dict[str, str]:
        timeout_s = self.settings.health_check_timeout_s
        return {
            "api": "ok" if self._started else "starting",
            "database": await probe(self._check_database(), timeout_s),
            "nats": await probe(self._check_nats(), timeout_s),
        }

    async def _check_database(self) -> str:
        if self._engine is None:
            return "not started"
        await check_database(self._engine)
        return "ok"

    async def _check_nats(self) -> str:
        if self._nats is None:
            return "not started"
        if not self._nats.is_connected:
            return "disconnected"
        await self._nats.flush(timeout=self.settings.health_check_timeout_s)
        return "ok"

    async def _close_nats(self) -> None:
        nc, self._nats = self._nats, None
        if nc is not None:
            await nc.close()

    def describe(self) -> str:
        return (
            f"fnplane control is up at {self.url} (GET /health), NATS at {self.settings.nats_url}, "
            f"database {_redact(self.settings.database_url)}. Ctrl-C stops it."
        )


class GatewayServer(_RoleServer):
    """One gateway replica: pexec/exec/status/direct/assets/queues; the control API is elsewhere."""

    role = "gateway"

    def __init__(self, settings: GatewayServerSettings, *, out: Callable[[str], None] = print) -> None:
        super().__init__(settings, out)
        self.settings = settings
        self.gateway: Gateway | None = None

    async def _start(self) -> None:
        s = self.settings
        authority = HttpAccessAuthority(s.control_url)
        self._push("access-authority", authority.aclose)
        updates: dict[str, Any] = {"control_url": s.control_url}
        if s.public_url:
            updates["public_url"] = s.public_url
        gateway_settings = GatewaySettings().model_copy(update=updates)
        self.gateway = create_gateway_app(gateway_settings, s.nats_url, authority, s.nats_creds)
        lifespan = Lifespan(self.gateway, "gateway")
        await lifespan.startup(s.stop_timeout_s)
        self._push("gateway", lambda: self._shutdown_lifespan(lifespan))
        host_label = gateway_settings.host_label

        def claims(scope: Any) -> bool:
            return is_gateway_request(scope, host_label)

        await self._serve_http(PlatformApp(None, self.health, lifespan, claims, self._limits(), self.facts))

    def facts(self) -> dict[str, str]:
        return {"role": self.role}

    def _bus_clients(self) -> dict[str, Any]:
        return {"gateway": self.gateway.bus.nc if self.gateway is not None else None}

    def _metrics_refreshers(self) -> list[Refresher]:
        async def queue_depths() -> None:
            # the versions this gateway has queued to (a gateway has no database): every gateway of
            # them reports the same depth, so dashboards take the max over gateways, not the sum
            if self.gateway is None:
                return
            bus = self.gateway.bus
            depths = []
            for version_id, function_id in list(bus.queued_versions.items()):
                # a queue the bus cannot read now is left out of this scrape, never fails it
                with contextlib.suppress(Exception):
                    depths.append((function_id, version_id, await bus.queue_depth(version_id)))
            metrics.QUEUE_DEPTH.clear()
            for function_id, version_id, depth in depths:
                metrics.QUEUE_DEPTH.labels(function_id, version_id).set(depth)

        return [queue_depths]

    async def health(self) -> dict[str, str]:
        ready = self.gateway is not None and self.gateway.ready
        return {"gateway": "ok" if ready and self._started else "not ready"}

    def describe(self) -> str:
        return (
            f"fnplane gateway is up at {self.url} (GET /health), NATS at {self.settings.nats_url}, "
            f"control API at {self.settings.control_url}. Ctrl-C stops it."
        )


def _never(_scope: Any) -> bool:
    return False


async def serve_role(server: ControlServer | GatewayServer, *, out: Callable[[str], None] = print) -> int:
    """Run until SIGINT/SIGTERM (exit code 0), a failed start or a dead HTTP server (exit code 1)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await server.start()
        except FnplaneError as error:
            logger.error("fnplane %s failed to start: %s", server.role, error.detail)
            return 1
        except (LifespanError, OSError, RuntimeError) as error:
            logger.error("fnplane %s failed to start: %s", server.role, error)
            return 1
        out(server.describe())
        failure: str | None = None
        while not stop.is_set():
            try:
                await within(stop.wait(), _WATCH_INTERVAL_S)
            except TimeoutError:
                failure = server.failure()
                if failure:
                    logger.error("%s; stopping", failure)
                    break
        out(f"fnplane {server.role} is stopping ...")
        await server.aclose()
        out(f"fnplane {server.role} stopped.")
        return 1 if failure else 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_control(settings: ControlServerSettings) -> int:
    return _run(ControlServer(settings), "fnplane-control")


def run_gateway(settings: GatewayServerSettings) -> int:
    return _run(GatewayServer(settings), "fnplane-gateway")


def _run(server: ControlServer | GatewayServer, service_name: str) -> int:
    tracing.configure_tracing(service_name)
    try:
        return event_loop.run(serve_role(server))
    finally:
        tracing.shutdown_tracing()
