"""OAuth2 client credentials (`POST /token`) and the public keys (`GET /.well-known/jwks.json`).

`POST /token` (RFC 6749 4.4): HTTP Basic `client_id:secret` (or `client_id`/`client_secret` form
fields), form `grant_type=client_credentials`, optional `scope=<space-separated>` (omitted: every
allowed scope) -> `{"access_token", "token_type": "Bearer", "expires_in", "scope"}`. Errors are
RFC 6749 5.2 JSON bodies, not problem documents, because OAuth2 clients parse them.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from fnplane.control.auth.components import AuthComponents
from fnplane.control.auth.service_accounts import OAuthError
from fnplane.control.components import auth_components
from fnplane.control.json_values import text_rule

router = APIRouter(tags=["auth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(error: OAuthError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fnplane"'
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "client authentication must use HTTP Basic", 401)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError as error:  # binascii.Error, UnicodeDecodeError, or non-ASCII text
        raise OAuthError("invalid_client", "malformed HTTP Basic credentials", 401) from error
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "malformed HTTP Basic credentials", 401)
    # RFC 6749 2.3.1: both parts are form-urlencoded before base64
    return unquote(client_id), unquote(secret)


_OAUTH_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_TOKEN_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "scope": {"type": "string", "description": "space-separated scopes"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    }
}
_TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a service-account JWT",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["access_token", "token_type", "expires_in", "scope"],
                    "properties": {
                        "access_token": {"type": "string"},
                        "token_type": {"type": "string", "enum": ["Bearer"]},
                        "expires_in": {"type": "integer"},
                        "scope": {"type": "string"},
                    },
                }
            }
        },
    },
    **{
        status: {"description": description, "content": {"application/json": {"schema": _OAUTH_ERROR_SCHEMA}}}
        for status, description in (
            (400, "RFC 6749 5.2: invalid_request, unsupported_grant_type, invalid_scope"),
            (401, "RFC 6749 5.2: invalid_client"),
        )
    },
}


_SINGLE_PARAMETERS = ("grant_type", "scope", "client_id", "client_secret")


@router.post(
    "/token",
    summary="OAuth2 client-credentials token (service accounts)",
    openapi_extra=_TOKEN_OPENAPI,
    responses=_TOKEN_RESPONSES,
)
async def token(request: Request, auth: AuthComponents = Depends(auth_components)) -> JSONResponse:
    try:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
        form = await request.form()
        for name in _SINGLE_PARAMETERS:
            if len(form.getlist(name)) > 1:  # RFC 6749 3.2: never more than once
                raise OAuthError("invalid_request", f"{name} is given more than once")
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            raise OAuthError("unsupported_grant_type", f"grant_type '{grant_type}' is not supported")
        credentials = _basic_credentials(request)
        if credentials is None:
            client_id, secret = form.get("client_id"), form.get("client_secret")
            if not isinstance(client_id, str) or not isinstance(secret, str):
                raise OAuthError("invalid_client", "client authentication is required", 401)
            credentials = (client_id, secret)
        if text_rule(credentials[0]) is not None:
            # no client has such an id, and PostgreSQL cannot even be asked (its text holds no NUL)
            raise OAuthError("invalid_client", "client authentication failed", 401)
        scope = form.get("scope")
        requested = str(scope).split() if isinstance(scope, str) and scope.strip() else None
        minted = await auth.service_accounts.token(credentials[0], credentials[1], requested)
    except OAuthError as error:
        return _oauth_error(error)
    body: dict[str, Any] = {
        "access_token": minted.token,
        "token_type": "Bearer",
        "expires_in": minted.expires_in,
        "scope": " ".join(minted.scopes),
    }
    return JSONResponse(body, headers=_NO_STORE)


@router.get("/.well-known/jwks.json", summary="Public keys that verify fnplane JWTs")
async def jwks(auth: AuthComponents = Depends(auth_components)) -> JSONResponse:
    return JSONResponse(await auth.signer.jwks(), headers={"Cache-Control": "max-age=300"})
