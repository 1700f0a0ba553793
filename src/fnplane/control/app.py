"""The control-plane ASGI application: `create_app(settings, engine, *, collaborators) -> ControlApp`.

What the app is made of is built once by `create_components` and kept as `app.components`, typed;
whoever builds the app hands in its collaborators (the agent kick, the NATS connection) as arguments
and reads what it needs (the gateway's `access_authority`) from `app.components`.

Every FnplaneError and every request-validation error becomes `application/problem+json`, and the
OpenAPI document (`/v3/openapi`) says so (`fnplane.control.openapi`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from fnplane.control.admission import BodyAdmissionMiddleware
from fnplane.control.auth.revocation import PublishRevoked
from fnplane.control.autoscaler import AutoscalerSettings, SharePeers
from fnplane.control.components import ControlComponents, create_components
from fnplane.control.content_type import JsonBodyMiddleware
from fnplane.control.db.repositories.transactions import Engine
from fnplane.control.field_paths import field_and_rule
from fnplane.control.head import HeadAsGetMiddleware
from fnplane.control.json_values import JsonValuesMiddleware
from fnplane.control.openapi import document_problems
from fnplane.control.reconciler import WakePeers
from fnplane.control.request_metrics import RequestMetricsMiddleware
from fnplane.control.request_target import RequestTargetMiddleware
from fnplane.control.routes import include_all
from fnplane.control.services.instance_logs import NatsConnection
from fnplane.control.services.instances import IssueWorkerCredentials
from fnplane.control.services.notify import NotifyClusterChanged, PublishUndeployed
from fnplane.control.settings import ControlSettings
from fnplane.control.uuid_paths import UuidPathMiddleware
from fnplane.shared import metrics
from fnplane.shared.errors import BadRequestError, FnplaneError
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE, problem, problem_for, problem_headers

log = logging.getLogger(__name__)

# the detail of the HTTPException FastAPI raises when the body cannot be parsed at all
FASTAPI_BODY_ERROR = "There was an error parsing the body"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_CONTENT_TYPE


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error to a problem document through the one table (`fnplane.shared.problems`)."""

    def _domain_problem(request: Request, error: FnplaneError) -> ProblemResponse:
        status, body = problem_for(error, request.url.path)
        return ProblemResponse(body, status_code=status, headers=dict(problem_headers(error)) or None)

    @app.exception_handler(FnplaneError)
    async def _domain_error(request: Request, error: FnplaneError) -> ProblemResponse:
        metrics.count_auth_failure("control", error)
        return _domain_problem(request, error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> ProblemResponse:
        field, rule = field_and_rule(error.errors(), error.body)
        detail = f"Validation failed: field '{field}': {rule}"
        return _domain_problem(request, BadRequestError(detail, field=field, rule=rule))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> ProblemResponse:
        # a defect of ours: the operator sees it in the log, the client a problem document, not text
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        body = problem(500, "internal error; the platform's log has the details", request.url.path)
        return ProblemResponse(body, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> ProblemResponse:
        if error.status_code == 400 and error.detail == FASTAPI_BODY_ERROR:
            # FastAPI's answer to a body json.loads cannot take (bad UTF-8, nesting past the recursion limit)
            rule = "must be valid UTF-8 JSON, nested at most a few hundred levels"
            return _domain_problem(
                request, BadRequestError(f"{error.detail}: {rule}", field="body", rule=rule)
            )
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # RFC 9110 15.5.6: every method of the path (Starlette names those of one route only)
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return ProblemResponse(
            problem(error.status_code, str(error.detail), request.url.path),
            status_code=error.status_code,
            headers=headers or None,
        )


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route takes on the request's path (asked of the router, as it would route);
    HEAD wherever GET is (`HeadAsGetMiddleware`)."""
    routes = request.app.router.routes

    def takes(method: str) -> bool:
        return any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)

    return [method for method in _METHODS if takes(method) or (method == "HEAD" and takes("GET"))]


def _internal_path(scope: MutableMapping[str, Any]) -> bool:
    return str(scope.get("path", "")).startswith("/v1/fnplane/")


class ControlApp(FastAPI):
    """The control plane's FastAPI app; `components` is what it was built from."""

    def __init__(self, components: ControlComponents, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.components = components

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, built once, with the problem answers the API really gives."""
        if self.openapi_schema is None:
            self.openapi_schema = document_problems(super().openapi())
        return self.openapi_schema


@asynccontextmanager
async def _lifespan(app: ControlApp) -> AsyncIterator[None]:
    await app.components.start()
    try:
        yield
    finally:
        await app.components.aclose()


def create_app(
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
) -> ControlApp:
    """The app; MissingKeyHashSecretError (naming FNPLANE_CONTROL_KEY_HASH_SECRET) without a secret.

    * `notify_cluster_changed(cluster_name)`: kicks that cluster's agent when its assignments change
      (`fnplane up` publishes `subjects.cluster_changed`); None: agents find changes by polling.
    * `publish_revoked(event)`: broadcasts a credential revocation to every gateway (`fnplane up`
      publishes `subjects.CREDENTIALS_REVOKED`); None: gateways in other processes notice within
      `auth_cache_ttl_s`.
    * `publish_undeployed(event)`: tells every gateway a version was undeployed, so that they answer
      the requests still queued for it (`fnplane up` publishes `subjects.VERSIONS_UNDEPLOYED`); None:
      those requests wait out their poll window.
    * `nats`: the connection instance logs are asked for over; None: instance logs answer 503.
    * `autoscaler_settings`: default `AutoscalerSettings()` (from FNPLANE_AUTOSCALER_*).
    * `issue_worker_credentials(version_id, instance_id)`: the `.creds` text of a new instance's own
      NATS credential (`fnplane up` holds the account signing key); None: assignments carry none.
    * `wake_peers()`: on a replica without the control lease, tells the holder to reconcile
      (`fnplane control` broadcasts on NATS); None: the holder finds the change at its next pass.
    * `share_with_peers(payload)`: broadcasts what the autoscaler learns (agents' load, wakes) to the
      other replicas, whose `autoscaler.observe_from_peer` records it; None: a single replica.
    """
    components = create_components(
        settings,
        engine,
        notify_cluster_changed=notify_cluster_changed,
        publish_revoked=publish_revoked,
        publish_undeployed=publish_undeployed,
        nats=nats,
        autoscaler_settings=autoscaler_settings,
        issue_worker_credentials=issue_worker_credentials,
        wake_peers=wake_peers,
        share_with_peers=share_with_peers,
    )
    app = ControlApp(
        components,
        title="fnplane control plane",
        version="0.1.0",
        openapi_url="/v3/openapi",
        docs_url="/v3/docs",
        redoc_url=None,
        lifespan=_lifespan,
        # FastAPI's own spans (with tracing on): one per API request, not three more per request for
        # dependencies, endpoint and serialization, and none for the agents' own polls and reports
        # (/v1/fnplane/..., several a second per agent with no user traffic)
        telemetry={"operation_spans": False, "exclude": _internal_path},
    )
    install_problem_handlers(app)
    # innermost: a HEAD is routed as its GET (the layers outside see and count the HEAD)
    app.add_middleware(HeadAsGetMiddleware)
    # a JSON body's numbers are finite and its strings text the database holds (the content type is
    # known to be JSON by then)
    app.add_middleware(JsonValuesMiddleware)
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(UuidPathMiddleware)
    # no NUL in the path or the query reaches a route (PostgreSQL's text cannot hold it)
    app.add_middleware(RequestTargetMiddleware)
    # outermost: no body is read before its size and its credential were admitted
    app.add_middleware(
        BodyAdmissionMiddleware,
        authenticator=components.auth.authenticator,
        max_body_bytes=settings.max_body_bytes,
    )
    # outermost: every answer is counted, the admission's refusals too
    app.add_middleware(RequestMetricsMiddleware)
    include_all(app)
    return app
