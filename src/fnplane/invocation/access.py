"""The gateway's view of the AccessAuthority: a short cache and NVCF's version-selection rules.

The cache keeps grants for `auth_cache_ttl_s` (never past the credential's expiry) as a backstop;
a revocation (shared/revocations.py) drops the grants it covers at once (`forget`). A grant fetched
while a revocation arrived is not cached: it may have been decided before the revocation.
"""

from __future__ import annotations

import random
import time

from fnplane.shared import errors, revocations
from fnplane.shared.contracts import AccessAuthority
from fnplane.shared.models.access import AccessGrant, VersionTarget
from fnplane.shared.revocations import CredentialsRevoked

INVOCABLE = frozenset({"ACTIVE", "DEGRADING"})
QUEUE_VISIBLE = frozenset({"ACTIVE", "DEPLOYING"})


class CachedAccess:
    """Caches grants for `ttl_s` keyed by (bearer, scope, function, version); errors are not cached."""

    def __init__(self, authority: AccessAuthority, ttl_s: float, max_entries: int = 10_000) -> None:
        self._authority = authority
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._cache: dict[tuple[str, str, str | None, str | None], tuple[float, AccessGrant]] = {}
        # bumped by every forget()
        self._generation = 0

    def forget(self, event: CredentialsRevoked) -> None:
        """Drop every cached grant the revocation covers."""
        self._generation += 1
        revocations.forget_covered(self._cache, event, lambda key, entry: entry[1].held(key[2]))

    async def fresh_grant(
        self, bearer: str, scope: str, function_id: str | None = None, version_id: str | None = None
    ) -> AccessGrant:
        """Ask the authority, whatever is cached (a re-check after a revocation)."""
        self._cache.pop((bearer, scope, function_id, version_id), None)
        return await self.grant(bearer, scope, function_id, version_id)

    async def grant(
        self, bearer: str, scope: str, function_id: str | None = None, version_id: str | None = None
    ) -> AccessGrant:
        key = (bearer, scope, function_id, version_id)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        grant = await self._authority.grant(bearer, scope, function_id, version_id)
        if generation != self._generation:
            return grant
        if len(self._cache) >= self._max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
        deadline = now + self._ttl_s
        if grant.valid_until is not None:  # never past the credential's own expiry
            deadline = min(deadline, now + grant.valid_until - time.time())
        self._cache[key] = (deadline, grant)
        return grant


def choose_version(grant: AccessGrant, version_id: str | None) -> VersionTarget:
    """Uniformly at random among ACTIVE/DEGRADING versions; only DEGRADED -> 400; none -> 404."""
    versions = grant.versions
    if version_id is not None:
        versions = [v for v in versions if v.version_id == version_id]
        if not versions:
            raise errors.NotFoundError(f"function version {version_id} not found")
    invocable = [v for v in versions if v.status in INVOCABLE]
    if invocable:
        return invocable[0] if len(invocable) == 1 else random.choice(invocable)
    if any(v.status == "DEGRADED" for v in versions):
        raise errors.FailedPreconditionError(
            f"function {grant.function_id} is DEGRADED and cannot be invoked",
            field="functionId",
            rule="function status must be ACTIVE or DEGRADING",
        )
    raise errors.NotFoundError(f"function {grant.function_id} has no ACTIVE version to invoke")
