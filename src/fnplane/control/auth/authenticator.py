"""`DatabaseAuthenticator`: bearer string -> Principal, for API keys and our own ES256 JWTs.

* `nvapi-...` strings are API keys: looked up by keyed hash; SUSPENDED, EXPIRED or unknown -> 401.
  Scopes and resources are the union over the key's `authorizations.policies` addressed to this
  service: a policy whose `aud` / `auds` name only other services grants nothing here (nvcf-api.md
  1.13); a policy that names no audience is taken as this service's.
* Anything else is a JWT (nvcf-api.md 5.2): ES256, our issuer and audience, `scopes` JSON-array claim;
  `sub` is looked up in the clients table for the tenant (unknown `sub` -> 404, as NVCF does); its
  `ncaId` and `clientEpoch` must match the client as stored now (a token issued before the client's
  creation or last rotation -> 401). The scopes are those of the token, narrowed to what the client
  is allowed now.

Resolutions are cached for `auth_cache_ttl_s` (never past the credential's own expiry). A revocation
(auth/revocation.py `Revoker`) calls `forget()` so this process forgets it at once; the gateways hear
of it over the bus.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import datetime
from typing import Any, Protocol

from fnplane.control.auth.credentials import ISSUER_SERVICE_ID, is_api_key, keyed_hash
from fnplane.control.auth.principal import Principal, ResourceGrant
from fnplane.control.auth.signing import TokenSigner
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.api_keys import ApiKeyRecord, ApiKeyRepository
from fnplane.control.db.repositories.clients import ClientRepository
from fnplane.shared import revocations
from fnplane.shared.errors import NotFoundError, UnauthorizedError
from fnplane.shared.revocations import CredentialsRevoked

ACTIVE = "ACTIVE"
SUSPENDED = "SUSPENDED"
EXPIRED = "EXPIRED"
# bounded memory: at most this many resolved bearers are kept
_MAX_CACHE_ENTRIES = 10_000


class Authenticator(Protocol):
    """The seam the routes and the AccessAuthority authenticate through."""

    async def authenticate(self, bearer: str) -> Principal:
        """Resolve a bearer string (API key or JWT); raise UnauthorizedError if it is not valid."""
        ...

    def forget(self, event: CredentialsRevoked) -> None:
        """Drop the cached resolutions a revocation covers."""
        ...


def key_status(record: ApiKeyRecord, now: datetime | None = None) -> str:
    """The wire status: the stored one, except that a key past its expiry is EXPIRED."""
    if record.status == SUSPENDED:
        return SUSPENDED
    return EXPIRED if record.expires_at <= (now or now_utc()) else record.status


def addressed_here(policy: dict[str, Any]) -> bool:
    audiences = [policy["aud"]] if policy.get("aud") else []
    audiences += policy.get("auds") or []
    return not audiences or ISSUER_SERVICE_ID in audiences


def principal_for_key(record: ApiKeyRecord) -> Principal:
    scopes: set[str] = set()
    grants: list[ResourceGrant] = []
    for policy in record.authorizations.get("policies", []):
        if not addressed_here(policy):
            continue
        scopes.update(str(s) for s in policy.get("scopes", []))
        for resource in policy.get("resources", []):
            grant = ResourceGrant(type=str(resource.get("type", "")), id=str(resource.get("id", "")))
            if grant not in grants:
                grants.append(grant)
    return Principal(
        nca_id=record.nca_id,
        subject=record.owner_id,
        kind="api_key",
        scopes=frozenset(scopes),
        resources=tuple(grants),
        extra={"key_id": record.key_id},
        valid_until=record.expires_at.timestamp(),
    )


class DatabaseAuthenticator:
    def __init__(
        self,
        keys: ApiKeyRepository,
        clients: ClientRepository,
        signer: TokenSigner,
        *,
        key_hash_secret: str,
        cache_ttl_s: float,
    ) -> None:
        self._keys = keys
        self._clients = clients
        self._signer = signer
        self._secret = key_hash_secret
        self._ttl_s = cache_ttl_s
        # bearer -> (principal, monotonic deadline)
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        # bumped by every forget(): a resolution that started before one is not cached
        self._generation = 0

    async def authenticate(self, bearer: str) -> Principal:
        cached = self._cache.get(bearer)
        if cached is not None:
            principal, deadline = cached
            if time.monotonic() < deadline:
                return principal
            self._cache.pop(bearer, None)
        generation = self._generation
        if is_api_key(bearer):
            principal, valid_for_s = await self._resolve_key(bearer)
        else:
            principal, valid_for_s = await self._resolve_jwt(bearer)
        if generation == self._generation:
            self._remember(bearer, principal, min(self._ttl_s, valid_for_s))
        return principal

    def forget(self, event: CredentialsRevoked) -> None:
        """Forget every cached resolution the revocation covers (this process; Revoker broadcasts)."""
        self._generation += 1
        revocations.forget_covered(self._cache, event, lambda _, entry: entry[0].held())

    def _remember(self, bearer: str, principal: Principal, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        self._cache[bearer] = (principal, time.monotonic() + ttl_s)
        self._cache.move_to_end(bearer)
        while len(self._cache) > _MAX_CACHE_ENTRIES:
            self._cache.popitem(last=False)

    async def _resolve_key(self, bearer: str) -> tuple[Principal, float]:
        record = await self._keys.by_hash(keyed_hash(self._secret, bearer))
        if record is None:
            raise UnauthorizedError("Unauthorized access: unknown API key")
        now = now_utc()
        status = key_status(record, now)
        if status != ACTIVE:
            raise UnauthorizedError(f"Unauthorized access: API key is {status}")
        return principal_for_key(record), (record.expires_at - now).total_seconds()

    async def _resolve_jwt(self, bearer: str) -> tuple[Principal, float]:
        claims = await self._signer.verify(bearer)
        scopes = claims.get("scopes")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise UnauthorizedError("Unauthorized access: the token has no `scopes` array claim")
        subject = str(claims["sub"])
        client = await self._clients.get(subject)
        if client is None:
            raise NotFoundError(f"Client '{subject}' not found")
        # a token of an earlier secret, or of an earlier client with the same id (auth/signing.py)
        if claims.get("ncaId") != client.nca_id or claims.get("clientEpoch") != client.epoch_us:
            raise UnauthorizedError(
                "Unauthorized access: the token was issued before its client's secret was last set"
            )
        principal = Principal(
            nca_id=client.nca_id,
            subject=subject,
            kind="jwt",
            scopes=frozenset(scopes) & frozenset(client.allowed_scopes),
            resources=None,
            extra={"client_id": subject, "jti": str(claims.get("jti", ""))},
            valid_until=float(claims["exp"]),
        )
        return principal, float(claims["exp"]) - time.time()
