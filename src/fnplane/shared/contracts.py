"""Seams between the planes, as Protocols (the planes never import each other)."""

from __future__ import annotations

from typing import Protocol

from fnplane.shared.models.access import AccessGrant
from fnplane.shared.revocations import CredentialsRevoked


class AccessAuthority(Protocol):
    async def grant(
        self, bearer: str, scope: str, function_id: str | None = None, version_id: str | None = None
    ) -> AccessGrant:
        """Authenticate `bearer`, check `scope` and, if a function is named, its visibility.

        Raises UnauthorizedError / ForbiddenError / NotFoundError (fnplane.shared.errors).
        Implementations may cache for a few seconds (ControlSettings.auth_cache_ttl_s).
        """
        ...

    def forget(self, event: CredentialsRevoked) -> None:
        """Drop what is cached for the credentials and functions a revocation covers (the gateway
        calls this for every revocation it hears of, before it re-checks its open invocations)."""
        ...
