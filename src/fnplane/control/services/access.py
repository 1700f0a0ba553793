"""The control plane's `AccessAuthority` (shared.contracts): what the invocation plane asks per request.

`grant(bearer, scope, function_id, version_id)` authenticates with the app's authenticator (which
caches the credential's principal), checks the scope and, if a function is named, returns every
version of it the caller may see (404 / 403 as in `services.visibility`). A function's visible versions
are cached for `access_versions_cache_ttl_s`, short because their `status` decides where the gateway
sends a request (a version that just became ACTIVE must be seen soon); bounded. A list without an
invocable version is not cached at all.

`forget(event)` (a revocation the gateway heard of, shared/revocations.py) drops both caches' entries
the event covers, so that the gateway's re-check that follows sees the database.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from fnplane.control.auth.authenticator import Authenticator
from fnplane.control.auth.principal import Principal
from fnplane.control.db.repositories import authorizations as parties_repo
from fnplane.control.db.repositories import deployments as deployments_repo
from fnplane.control.db.repositories.transactions import Connection, Database
from fnplane.control.services.visibility import SeenVersion, visible_version, visible_versions
from fnplane.shared import revocations
from fnplane.shared.errors import ForbiddenError
from fnplane.shared.models.access import AccessGrant, VersionTarget
from fnplane.shared.revocations import CredentialsRevoked, Held

K = TypeVar("K")
T = TypeVar("T")

MAX_CACHE_ENTRIES = 10_000
_INVOCABLE = frozenset({"ACTIVE", "DEGRADING"})


class _TtlCache(Generic[K, T]):
    def __init__(self, ttl_s: float, max_entries: int = MAX_CACHE_ENTRIES) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[K, tuple[float, T]] = OrderedDict()

    def get(self, key: K) -> T | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires < time.monotonic():
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: T) -> None:
        if self._ttl_s <= 0:
            return
        self._entries[key] = (time.monotonic() + self._ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def forget(self, event: CredentialsRevoked, held: Callable[[K, T], Held]) -> None:
        revocations.forget_covered(self._entries, event, lambda key, entry: held(key, entry[1]))


class ControlAccessAuthority:
    def __init__(self, database: Database, authenticator: Authenticator, *, versions_ttl_s: float) -> None:
        self._database = database
        self._authenticator = authenticator
        # (bearer, function, version) -> (the principal it was for, its visible versions, public)
        self._versions: _TtlCache[
            tuple[str, str, str | None], tuple[Principal, list[VersionTarget], bool]
        ] = _TtlCache(versions_ttl_s)
        # bumped by every forget(): versions looked up before one are not cached
        self._generation = 0

    async def grant(
        self, bearer: str, scope: str, function_id: str | None = None, version_id: str | None = None
    ) -> AccessGrant:
        principal = await self._authenticator.authenticate(bearer)
        if not principal.has_any_scope(scope):
            raise ForbiddenError(f"the credential lacks the required scope: {scope}")
        versions: list[VersionTarget] = []
        public = False
        if function_id is not None:
            versions, public = await self._visible(principal, bearer, function_id, version_id)
        return AccessGrant(
            ncaId=principal.nca_id,
            subject=principal.subject,
            scopes=sorted(principal.scopes),
            keyId=principal.extra.get("key_id"),
            clientId=principal.extra.get("client_id"),
            validUntil=principal.valid_until,
            functionId=function_id,
            versions=versions,
            public=public,
        )

    def forget(self, event: CredentialsRevoked) -> None:
        self._generation += 1
        self._authenticator.forget(event)

        self._versions.forget(event, lambda key, entry: entry[0].held(key[1]))

    async def _visible(
        self, principal: Principal, bearer: str, function_id: str, version_id: str | None
    ) -> tuple[list[VersionTarget], bool]:
        key = (bearer, function_id, version_id)
        cached = self._versions.get(key)
        if cached is not None:
            return cached[1], cached[2]
        generation = self._generation
        async with self._database.reading() as conn:
            if version_id is None:
                seen = await visible_versions(conn, principal, function_id)
            else:
                seen = [await visible_version(conn, principal, function_id, version_id)]
            targets = [await _target(conn, s) for s in seen]
            public = await parties_repo.is_public(conn, function_id)
        # a list with nothing to invoke is not kept: the gateway asks again before it refuses a call
        # with it, and the version may just have become ACTIVE
        if generation == self._generation and any(t.status in _INVOCABLE for t in targets):
            self._versions.put(key, (principal, targets, public))
        return targets, public


async def _target(conn: Connection, seen: SeenVersion) -> VersionTarget:
    v = seen.record
    concurrency = 1
    deployment = await deployments_repo.by_version(conn, v.version_id)
    if deployment is not None:
        specs = await deployments_repo.specs_of(conn, deployment.deployment_id)
        concurrency = sum(s.max_request_concurrency for s in specs) or 1
    return VersionTarget(
        functionVersionId=v.version_id,
        functionName=v.name,
        ownerNcaId=v.nca_id,
        status=v.status,
        inferenceUrl=v.inference_url,
        functionType=v.function_type,
        maxRequestConcurrency=concurrency,
        rateLimit=v.rate_limit,
    )
