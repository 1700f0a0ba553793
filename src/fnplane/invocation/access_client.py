"""An AccessAuthority over HTTP, for a gateway on another host than the control plane.

    authority = HttpAccessAuthority("http://control:8080", timeout_s=5.0)
    gateway = create_gateway_app(settings, nats_url, authority)

It calls `POST {control_url}/v1/fnplane/access` (the replica that answered last, of a comma-separated
list: shared/control_urls.py) with the caller's own bearer (shared.models.access) and
maps the control plane's 400/401/403/404 back onto the error tree; the gateway's CachedAccess keeps
grants for `auth_cache_ttl_s`.
"""

from __future__ import annotations

import json

import aiohttp

from fnplane.shared import errors
from fnplane.shared.control_urls import ControlUrls
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
        self._urls = ControlUrls(control_url)
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
        failure: Exception | None = None
        for base in self._urls.in_order():
            try:
                async with self._client().post(
                    f"{base}/v1/fnplane/access", json=body, headers={"Authorization": f"Bearer {bearer}"}
                ) as response:
                    payload = await response.read()
                    if response.status == 200:
                        return AccessGrant.model_validate_json(payload)
                    detail = _detail(payload) or f"control plane answered {response.status}"
                    raise _ERRORS.get(response.status, errors.UnavailableError)(detail)
            except (aiohttp.ClientError, TimeoutError) as exc:  # down or cut off: the next replica
                self._urls.unreachable(base)
                failure = exc
        raise errors.UnavailableError(f"control plane not reachable: {failure!r}") from None

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
