"""Everything the control plane is made of, built once, in one place: `create_components`.

    create_app(settings, engine, notify_cluster_changed=..., publish_revoked=..., nats=..., ...,
               issue_worker_credentials=...)
     └── create_components(...) -> ControlComponents          (app.components)
          ├── database          Database(engine): transactions, the SQLite write lock
          ├── auth              AuthComponents (auth/components.py): repositories, signer, key
          │                     services, the Revoker(publish_revoked) that broadcasts revocations
          ├── secret_box        SecretBox: function secrets sealed at rest
          ├── notifier          ClusterNotifier(notify_cluster_changed): kicks agents
          ├── (undeploys)       UndeployNotifier(publish_undeployed): tells gateways of an undeploy
          ├── lease             Lease (db/lease.py): which replica runs the once-only loops below
          ├── reconciler        Reconciler: status and instance counts; its `wake` goes to the services
          │                     (a replica without the lease passes a wake on through `wake_peers`)
          ├── access_authority  ControlAccessAuthority: what the gateway asks per request
          ├── functions, deployments, clusters, instances, authorizations, secrets, instance_logs,
          │   registry_credentials, telemetries
          └── autoscaler        Autoscaler(deployments): scaling cycles, metrics, wake-from-zero

Every part gets its collaborators through its constructor; nothing is looked up later. Routes reach
one part each through the FastAPI dependencies at the end of this module (`Depends(function_service)`),
which read the `ControlComponents` of the app that received the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from fnplane.control.auth.components import AuthComponents, create_auth
from fnplane.control.auth.revocation import PublishRevoked
from fnplane.control.autoscaler import Autoscaler, AutoscalerSettings, SharePeers
from fnplane.control.db.lease import Lease, create_lease
from fnplane.control.db.repositories.transactions import Database, Engine
from fnplane.control.reconciler import Reconciler, WakePeers
from fnplane.control.services.access import ControlAccessAuthority
from fnplane.control.services.authorizations import AuthorizationService
from fnplane.control.services.clusters import ClusterService
from fnplane.control.services.deployments import DeploymentService
from fnplane.control.services.functions import FunctionService
from fnplane.control.services.instance_logs import InstanceLogService, NatsConnection
from fnplane.control.services.instances import InstanceService, IssueWorkerCredentials
from fnplane.control.services.notify import (
    ClusterNotifier,
    NotifyClusterChanged,
    PublishUndeployed,
    UndeployNotifier,
)
from fnplane.control.services.registry_credentials import RegistryCredentialService
from fnplane.control.services.secret_box import SecretBox
from fnplane.control.services.secrets import SecretService
from fnplane.control.services.telemetries import TelemetryService
from fnplane.control.settings import ControlSettings


@dataclass(frozen=True)
class ControlComponents:
    settings: ControlSettings
    database: Database
    auth: AuthComponents
    secret_box: SecretBox
    notifier: ClusterNotifier
    reconciler: Reconciler
    access_authority: ControlAccessAuthority
    functions: FunctionService
    deployments: DeploymentService
    clusters: ClusterService
    instances: InstanceService
    authorizations: AuthorizationService
    secrets: SecretService
    registry_credentials: RegistryCredentialService
    telemetries: TelemetryService
    instance_logs: InstanceLogService
    autoscaler: Autoscaler

    lease: Lease

    async def start(self) -> None:
        """Take part in the lease, then start the background loops (the app's lifespan calls this)."""
        self.lease.on_acquired(self.reconciler.wake)
        await self.lease.start()
        await self.reconciler.start()
        await self.autoscaler.start()

    async def aclose(self) -> None:
        await self.autoscaler.aclose()
        await self.reconciler.aclose()
        await self.lease.aclose()


def create_components(
    settings: ControlSettings,
    engine: Engine,
    *,
    notify_cluster_changed: NotifyClusterChanged | None = None,
    publish_revoked: PublishRevoked | None = None,
    publish_undeployed: PublishUndeployed | None = None,
    nats: NatsConnection | None = None,
    autoscaler_settings: AutoscalerSettings | None = None,
    issue_worker_credentials: IssueWorkerCredentials | None = None,
    wake_peers: WakePeers | None = None,
    share_with_peers: SharePeers | None = None,
) -> ControlComponents:
    """The control plane on `engine`; MissingKeyHashSecretError without a key-hash secret."""
    key_hash_secret = settings.require_key_hash_secret()  # refused before the engine is touched
    database = Database(engine)
    auth = create_auth(engine, settings, publish_revoked)
    # function secret values are stored sealed; opened only for the agents' instance assignments
    secret_box = SecretBox(key_hash_secret)
    notifier = ClusterNotifier(database, notify_cluster_changed)
    # once-only work (reconciling, autoscaling) runs on the replica holding this lease
    lease = create_lease(engine, poll_interval_s=settings.lease_poll_interval_s)
    reconciler = Reconciler(database, settings, notifier, lease, wake_peers)
    undeploys = UndeployNotifier(auth.revoker, publish_undeployed)
    deployments = DeploymentService(database, settings, notifier, reconciler.wake, undeploys)
    return ControlComponents(
        settings=settings,
        database=database,
        auth=auth,
        secret_box=secret_box,
        notifier=notifier,
        reconciler=reconciler,
        access_authority=ControlAccessAuthority(
            database,
            auth.authenticator,
            versions_ttl_s=settings.access_versions_cache_ttl_s,
        ),
        functions=FunctionService(
            database, auth.accounts, secret_box, notifier, undeploys, settings.image_registries
        ),
        deployments=deployments,
        clusters=ClusterService(database, reconciler.wake),
        instances=InstanceService(database, secret_box, reconciler.wake, issue_worker_credentials),
        authorizations=AuthorizationService(database, auth.revoker),
        secrets=SecretService(database, secret_box),
        registry_credentials=RegistryCredentialService(
            database, secret_box, auth.accounts, settings.recognized_registries
        ),
        telemetries=TelemetryService(database, secret_box, auth.accounts),
        instance_logs=InstanceLogService(database, nats),
        autoscaler=Autoscaler(
            database,
            deployments,
            autoscaler_settings or AutoscalerSettings(),
            lease=lease,
            share_with_peers=share_with_peers,
        ),
        lease=lease,
    )


# -- FastAPI dependencies: each route asks for the one part it uses ---------------------------------------


def control_components(request: Request) -> ControlComponents:
    """The components of the app serving the request (`ControlApp.components`)."""
    components: ControlComponents = request.app.components
    return components


def auth_components(request: Request) -> AuthComponents:
    return control_components(request).auth


def access_authority(request: Request) -> ControlAccessAuthority:
    return control_components(request).access_authority


def function_service(request: Request) -> FunctionService:
    return control_components(request).functions


def deployment_service(request: Request) -> DeploymentService:
    return control_components(request).deployments


def cluster_service(request: Request) -> ClusterService:
    return control_components(request).clusters


def instance_service(request: Request) -> InstanceService:
    return control_components(request).instances


def authorization_service(request: Request) -> AuthorizationService:
    return control_components(request).authorizations


def secret_service(request: Request) -> SecretService:
    return control_components(request).secrets


def registry_credential_service(request: Request) -> RegistryCredentialService:
    return control_components(request).registry_credentials


def telemetry_service(request: Request) -> TelemetryService:
    return control_components(request).telemetries


def instance_log_service(request: Request) -> InstanceLogService:
    return control_components(request).instance_logs


def autoscaler(request: Request) -> Autoscaler:
    return control_components(request).autoscaler
