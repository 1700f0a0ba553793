"""An AccessAuthority over HTTP, for a gateway on another host than the control plane.

    authority = HttpAccessAuthority("http://control:8080", timeout_s=5.0)
    gateway = create_gateway_app(settings, nats_url, authority)

It calls `POST {control_url}/v1/fnplane/access` with the caller's own bearer (shared.models.access) and
maps the control plane's 400/401/403/404 back onto the error tree; the gateway's CachedAccess keeps
grants for `auth_cache_ttl_s`.
"""

from __future__ import annotations

import json

import aiohttp

from fnplane.shared import errors
from fnplane.shared.models.access import AccessGrant
from fnplane.shared.revocations import CredentialsRevoked

_ERRORS: dict[int, type[errors.FnplaneError]] = {
    400: errors.BadRequestError,
    401: errors.UnauthorizedError,
    403: errors.ForbiddenError,
    404: errors.NotFoundError,
}


class HttpAccessAuthority:
    def __init__(self, control_url: str, timeout_s: float = 5.0) -> None:
        self._url = control_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def grant(
        self, bearer: str, scope: str, function_id: str | None = None, version_id: str | None = None
    ) -> AccessGrant:
        body = {"scope": scope, "functionId": function_id, "functionVersionId": version_id}
        try:
            async with self._client().post(
                f"{self._url}/v1/fnplane/access", json=body, headers={"Authorization": f"Bearer {bearer}"}
            ) as response:
                payload = await response.read()
                if response.status == 200:
                    return AccessGrant.model_validate_json(payload)
                detail = _detail(payload) or f"control plane answered {response.status}"
                raise _ERRORS.get(response.status, errors.UnavailableError)(detail)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.UnavailableError(f"control plane not reachable: {exc!r}") from None

    def forget(self, event: CredentialsRevoked) -> None:
        """Nothing cached here: the control plane behind the URL hears of revocations itself (it is
        the one that publishes them, or shares their bus)."""

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _detail(payload: bytes) -> str | None:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    return doc.get("detail") if isinstance(doc, dict) else None
