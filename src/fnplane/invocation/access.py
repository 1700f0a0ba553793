"""The gateway's view of the AccessAuthority: a short cache and NVCF's version-selection rules.

The cache keeps grants for `auth_cache_ttl_s` (never past the credential's expiry) as a backstop;
a revocation (shared/revocations.py) drops the grants it covers at once (`forget`). A grant fetched
while a revocation arrived is not cached: it may have been decided before the revocation.

A busy credential never waits for the authority: concurrent requests for a grant that is not cached
share one lookup, and a grant in its last `REFRESH_AHEAD` of the TTL is served while one lookup
renews it in the background (without both, every TTL expiry sent each request in flight to the
database at once: 32 lookups every 5 s at 32 clients, and their latency to those requests).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fnplane.shared import errors, revocations
from fnplane.shared.contracts import AccessAuthority
from fnplane.shared.models.access import AccessGrant, VersionTarget
from fnplane.shared.revocations import CredentialsRevoked

INVOCABLE = frozenset({"ACTIVE", "DEGRADING"})
QUEUE_VISIBLE = frozenset({"ACTIVE", "DEPLOYING"})
# the last fifth of a cached grant's life: served while a background lookup renews it
REFRESH_AHEAD = 0.2

log = logging.getLogger(__name__)

GrantKey = tuple[str, str, str | None, str | None]
T = TypeVar("T")


class CachedAccess:
    """Caches grants for `ttl_s` keyed by (bearer, scope, function, version); errors are not cached."""

    def __init__(self, authority: AccessAuthority, ttl_s: float, max_entries: int = 10_000) -> None:
        self._authority = authority
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        # key -> (served until, renewed from, the grant) in monotonic seconds
        self._cache: dict[GrantKey, tuple[float, float, AccessGrant]] = {}
        # the one lookup in flight per key, which concurrent requests share
        self._lookups: dict[GrantKey, asyncio.Task[AccessGrant]] = {}
        # bumped by every forget()
        self._generation = 0

    def forget(self, event: CredentialsRevoked) -> None:
        """Drop every cached grant the revocation covers; lookups in flight are no longer shared."""
        self._generation += 1
        self._lookups.clear()
        revocations.forget_covered(self._cache, event, lambda key, entry: entry[2].held(key[2]))

    async def fresh_grant(
        self, bearer: str, scope: str, function_id: str | None = None, version_id: str | None = None
    ) -> AccessGrant:
        """Ask the authority, whatever is cached or in flight (a re-check after a revocation)."""
        key = (bearer, scope, function_id, version_id)
        self._cache.pop(key, None)
        return await self._lookup(key)

    async def grant(
        self, bearer: str, scope: str, function_id: str | None = None, version_id: str | None = None
    ) -> AccessGrant:
        key = (bearer, scope, function_id, version_id)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            if hit[1] <= now and key not in self._lookups:
                self._share(key).add_done_callback(_ignore_failure)  # its caller is the next request
            return hit[2]
        lookup = self._lookups.get(key) or self._share(key)
        # shielded: a caller that goes away does not cancel the lookup the others wait for
        return await asyncio.shield(lookup)

    async def grant_for(
        self,
        bearer: str,
        scope: str,
        function_id: str,
        version_id: str | None,
        pick: Callable[[AccessGrant], T],
    ) -> tuple[AccessGrant, T]:
        """The grant and what `pick` takes from its versions. A cached grant that `pick` refuses (404
        or 400) is asked for again: the version statuses it holds may predate a change (DEPLOYING ->
        ACTIVE), and a client that saw the API answer ACTIVE must not get "no ACTIVE version"."""
        key = (bearer, scope, function_id, version_id)
        hit = self._cache.get(key)
        cached = hit is not None and hit[0] > time.monotonic()
        grant = await self.grant(*key)
        try:
            return grant, pick(grant)
        except (errors.NotFoundError, errors.BadRequestError):
            if not cached:
                raise
        grant = await self.fresh_grant(*key)
        return grant, pick(grant)

    async def request_grant(
        self, bearer: str, scope: str, request_id: str, function_id: str, version_id: str
    ) -> AccessGrant:
        """The grant to see one request of this function version. Refusals say nothing of the
        function: to a caller who may not see it, another account's request is one that does not exist."""
        try:
            return await self.grant(bearer, scope, function_id, version_id)
        except errors.NotFoundError:
            raise errors.NotFoundError(f"request {request_id} not found") from None
        except errors.ForbiddenError:
            raise errors.ForbiddenError(f"the credential may not see request {request_id}") from None

    def _share(self, key: GrantKey) -> asyncio.Task[AccessGrant]:
        lookup = asyncio.create_task(self._lookup(key))
        self._lookups[key] = lookup
        lookup.add_done_callback(lambda done: self._finished(key, done))
        return lookup

    def _finished(self, key: GrantKey, lookup: asyncio.Task[AccessGrant]) -> None:
        if self._lookups.get(key) is lookup:  # not one a revocation has replaced since
            del self._lookups[key]

    async def _lookup(self, key: GrantKey) -> AccessGrant:
        generation = self._generation
        grant = await self._authority.grant(*key)
        if generation != self._generation:
            return grant
        now = time.monotonic()
        if len(self._cache) >= self._max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
        lifetime = self._ttl_s
        if grant.valid_until is not None:  # never past the credential's own expiry
            lifetime = min(lifetime, grant.valid_until - time.time())
        self._cache[key] = (now + lifetime, now + lifetime * (1 - REFRESH_AHEAD), grant)
        return grant


def _ignore_failure(lookup: asyncio.Task[Any]) -> None:
    """A background renewal that failed (the credential expired, the authority is down): the cached
    grant runs out as it would have, and the request after that asks again and hears why."""
    if not lookup.cancelled() and lookup.exception() is not None:
        log.debug("renewing a cached grant failed: %r", lookup.exception())


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
