"""The control-plane ASGI application: `create_app(settings, engine)`.

Every FnplaneError and every request-validation error becomes `application/problem+json`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from fnplane.control.settings import ControlSettings
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


def create_app(settings: ControlSettings, engine: AsyncEngine) -> FastAPI:
    app = FastAPI(
        title="fnplane control plane",
        version="0.1.0",
        openapi_url="/v3/openapi",
        docs_url="/v3/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    # authentication: API keys and JWTs (fnplane.control.auth); the AccessAuthority uses it too
    from fnplane.control.auth.components import create_auth

    app.state.auth = create_auth(engine, settings)
    app.state.authenticator = app.state.auth.authenticator
    install_problem_handlers(app)
    # Routers are included by fnplane.control.routes.include_all (each issue adds its own).
    from fnplane.control.routes import include_all

    include_all(app)
    return app
