"""FastAPI dependencies that turn the `Authorization` header into a `Principal` and check scopes.

The resolution itself lives in the app's `Authenticator` (`ControlComponents.auth.authenticator`);
routes only declare which scopes they accept:

    @router.get("/v2/nvcf/functions")
    async def list_functions(principal: Principal = requires(LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS)): ...

`requires` is a FastAPI `Security` dependency on an OAuth2 client-credentials scheme, so the OpenAPI
document (`/v3/openapi`) lists, for every operation, the scopes that admit a caller (any one of them):
`"security": [{"fnplane": ["list_functions", "list_functions_details"]}]`. API keys (`nvapi-...`) are
sent the same way, as `Authorization: Bearer`. The auth-matrix test reads this to cover every endpoint.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2

from fnplane.control.auth.principal import Principal
from fnplane.control.components import auth_components
from fnplane.shared import scopes as _scopes
from fnplane.shared.errors import ForbiddenError, UnauthorizedError

SECURITY_SCHEME = "fnplane"

# Documentation only (auto_error=False): the header is read and judged by `authenticate`.
_scheme = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="/token", scopes={scope: scope for scope in sorted(_scopes.ADMIN_SCOPES)}
        )
    ),
    scheme_name=SECURITY_SCHEME,
    description="A service-account JWT from POST /token or an API key (nvapi-...), sent as a Bearer token.",
    auto_error=False,
)


def bearer_token(request: Request) -> str:
    return parse_bearer(request.headers.get("authorization"))


def parse_bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` value; UnauthorizedError otherwise."""
    if not header:
        raise UnauthorizedError("Header of type `authorization` was missing")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("Unauthorized access: expected `Authorization: Bearer <token>`")
    return token.strip()


async def authenticate(request: Request, _documented: str | None = Depends(_scheme)) -> Principal:
    return await auth_components(request).authenticator.authenticate(bearer_token(request))


def requires(*any_of: str) -> Any:
    """A dependency that authenticates and demands at least one of `any_of` scopes (403 otherwise)."""

    async def dependency(principal: Principal = Depends(authenticate)) -> Principal:
        if any_of and not principal.has_any_scope(*any_of):
            raise ForbiddenError(f"the credential lacks the required scope: one of {', '.join(any_of)}")
        return principal

    return Security(dependency, scopes=list(any_of))
