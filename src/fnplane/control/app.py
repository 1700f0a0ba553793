"""The control-plane ASGI application: `create_app(settings, engine)`.

Every FnplaneError and every request-validation error becomes `application/problem+json`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from fnplane.control.auth.components import create_auth
from fnplane.control.autoscaler import Autoscaler
from fnplane.control.content_type import JsonBodyMiddleware
from fnplane.control.reconciler import Reconciler
from fnplane.control.routes import include_all
from fnplane.control.services.access import ControlAccessAuthority
from fnplane.control.services.notify import no_notify
from fnplane.control.services.secret_box import SecretBox
from fnplane.control.settings import ControlSettings
from fnplane.control.uuid_paths import UuidPathMiddleware
from fnplane.shared.errors import FnplaneError
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE, problem, problem_for


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_CONTENT_TYPE


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error to a problem document (shared by the control API and the gateway)."""

    @app.exception_handler(FnplaneError)
    async def _domain_error(request: Request, error: FnplaneError) -> ProblemResponse:
        status, body = problem_for(error, request.url.path)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return ProblemResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> ProblemResponse:
        first = error.errors()[0] if error.errors() else {}
        if first.get("type") == "json_invalid":
            # the loc of a JSON syntax error is the character offset, not a field
            field, rule = "body", f"must be valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
        else:
            field = _field_path(tuple(first.get("loc", ())))
            rule = str(first.get("msg", "invalid value"))
        detail = f"Validation failed: field '{field}': {rule}"
        body = problem(400, detail, request.url.path)
        body["field"] = field
        body["rule"] = rule
        return ProblemResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> ProblemResponse:
        return ProblemResponse(
            problem(error.status_code, str(error.detail), request.url.path), status_code=error.status_code
        )


def _install_functions_plane(app: FastAPI, settings: ControlSettings, engine: AsyncEngine) -> None:
    """Reconciler, agent kicks, the AccessAuthority and the autoscaler."""
    # `fnplane up` replaces app.state.notify with a NATS publisher; read at call time so it may
    app.state.notify = no_notify

    async def notify(cluster_name: str) -> None:
        await app.state.notify(cluster_name)

    app.state.reconciler = Reconciler(engine, settings, notify)
    app.state.access_authority = ControlAccessAuthority(
        engine,
        app.state.authenticator,
        auth_ttl_s=settings.auth_cache_ttl_s,
        versions_ttl_s=settings.access_versions_cache_ttl_s,
    )
    # the autoscaler is fed by the agents' metrics; `fnplane up` may set app.state.nats for instance logs
    app.state.nats = None
    app.state.autoscaler = Autoscaler(engine)
    app.state.metrics_sink = app.state.autoscaler.store


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await app.state.reconciler.start()
    await app.state.autoscaler.start()
    try:
        yield
    finally:
        await app.state.autoscaler.aclose()
        await app.state.reconciler.aclose()


def create_app(settings: ControlSettings, engine: AsyncEngine) -> FastAPI:
    """The app; MissingKeyHashSecretError (naming FNPLANE_CONTROL_KEY_HASH_SECRET) without a secret."""
    key_hash_secret = settings.require_key_hash_secret()
    app = FastAPI(
        title="fnplane control plane",
        version="0.1.0",
        openapi_url="/v3/openapi",
        docs_url="/v3/docs",
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    # authentication: API keys and JWTs (fnplane.control.auth); the AccessAuthority uses it too
    app.state.auth = create_auth(engine, settings)
    app.state.authenticator = app.state.auth.authenticator
    # function secret values are stored sealed; opened only for the agents' instance assignments
    app.state.secret_box = SecretBox(key_hash_secret)
    _install_functions_plane(app, settings, engine)
    install_problem_handlers(app)
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(UuidPathMiddleware)
    include_all(app)
    return app
