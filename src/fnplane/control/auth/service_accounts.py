"""Service accounts and OAuth2 client credentials (`ServiceAccountService`).

A service account is a row of the clients table with a secret (stored as a keyed hash) and the
scopes it may ever hold. `token()` is `POST /token`: it checks the secret and mints an ES256 JWT
whose `scopes` claim is the requested scopes intersected with the allowed ones. Rotating the
secret makes the old secret and every token minted with it useless at once (a token carries the
epoch of its client's secret, auth/signing.py); tokens are re-checked against the client's allowed
scopes on every use.

Delegation: a service account's tokens see the whole account (JWTs have no resource filter), so only
a caller whose own resources cover the whole account (a JWT, or an API key with both
`account-functions/*` and `authorized-functions/*`) may create, rotate or delete one, and only one
whose scopes are all among the caller's: nobody hands out, or takes over, more than they hold.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from fnplane.control.auth.credentials import hashes_equal, keyed_hash, new_client_secret
from fnplane.control.auth.principal import ACCOUNT_FUNCTIONS, AUTHORIZED_FUNCTIONS, Principal
from fnplane.control.auth.revocation import Revoker
from fnplane.control.auth.signing import MintedToken, TokenSigner
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.clients import ClientRecord, ClientRepository
from fnplane.shared import revocations
from fnplane.shared.errors import BadRequestError, ForbiddenError, NotFoundError
from fnplane.shared.models.auth import CLIENT_ID_PATTERN
from fnplane.shared.scopes import ACCOUNT_SETUP, ADMIN_SCOPES, KNOWN_SCOPE_RULE

CLIENT_ID_RE = re.compile(CLIENT_ID_PATTERN)
_NAME_MAX = 128


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error: `error` code, description and HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class ServiceAccountService:
    def __init__(
        self,
        repository: ClientRepository,
        signer: TokenSigner,
        revoker: Revoker,
        *,
        key_hash_secret: str,
        token_ttl_s: int,
    ) -> None:
        self._repository = repository
        self._signer = signer
        self._revoker = revoker
        self._secret = key_hash_secret
        self._ttl_s = token_ttl_s

    async def register(
        self, nca_id: str, scopes: Iterable[str], *, client_id: str | None = None, name: str | None = None
    ) -> tuple[ClientRecord, str]:
        """Store a service account without the delegation rules (bootstrap and tests)."""
        client_id = client_id or f"sa-{uuid.uuid4().hex}"
        secret = new_client_secret()
        record = ClientRecord(
            client_id=client_id,
            nca_id=nca_id,
            name=name or client_id,
            secret_hash=keyed_hash(self._secret, secret),
            allowed_scopes=sorted(set(scopes)),
            created_at=now_utc(),
            rotated_at=None,
        )
        await self._repository.insert(record)
        return record, secret

    async def create(
        self, caller: Principal, client_id: str | None, name: str | None, scopes: list[str] | None
    ) -> tuple[ClientRecord, str]:
        if client_id is not None and not CLIENT_ID_RE.match(client_id):
            raise BadRequestError(
                "clientId must match ^[A-Za-z0-9][A-Za-z0-9._-]{2,127}$",
                field="clientId",
                rule="^[A-Za-z0-9][A-Za-z0-9._-]{2,127}$",
            )
        if name is not None and not 1 <= len(name.strip()) <= _NAME_MAX:
            raise BadRequestError(
                f"name must have 1 to {_NAME_MAX} characters", field="name", rule=f"length 1-{_NAME_MAX}"
            )
        if not scopes:
            raise BadRequestError("scopes must name at least one scope", field="scopes", rule="non-empty")
        for index, scope in enumerate(scopes):
            if scope not in ADMIN_SCOPES:
                raise BadRequestError(
                    f"unknown scope '{scope}'", field=f"scopes.{index}", rule=KNOWN_SCOPE_RULE
                )
        _check_delegation(caller, scopes, "grant")
        return await self.register(caller.nca_id, scopes, client_id=client_id, name=name)

    async def list_for(self, caller: Principal) -> list[ClientRecord]:
        return [c for c in await self._repository.list(caller.nca_id) if c.secret_hash is not None]

    async def get(self, caller: Principal, client_id: str) -> ClientRecord:
        record = await self._repository.get(client_id)
        if record is None or record.nca_id != caller.nca_id or record.secret_hash is None:
            raise NotFoundError(f"Service account '{client_id}' not found")
        return record

    async def rotate(self, caller: Principal, client_id: str) -> tuple[ClientRecord, str]:
        """A new secret. A super admin (`account_setup`) may set one for any client of any account,
        including the admin client an account was created with (`adminClientId`, no secret yet): that
        is how the first credential of a new account is handed out. Anyone else only for a service
        account of their own account that they could have created (module docstring)."""
        if caller.has_any_scope(ACCOUNT_SETUP):
            if await self._repository.get(client_id) is None:
                raise NotFoundError(f"Service account '{client_id}' not found")
        else:
            _check_delegation(caller, (await self.get(caller, client_id)).allowed_scopes, "take over")
        secret = new_client_secret()
        await self._repository.set_secret(client_id, keyed_hash(self._secret, secret), now_utc())
        await self._revoker.revoked(revocations.revoked(client_ids=[client_id]))
        record = await self._repository.get(client_id)
        if record is None:  # deleted concurrently
            raise NotFoundError(f"Service account '{client_id}' not found")
        return record, secret

    async def delete(self, caller: Principal, client_id: str) -> None:
        _check_delegation(caller, (await self.get(caller, client_id)).allowed_scopes, "delete")
        await self._repository.delete(client_id)
        await self._revoker.revoked(revocations.revoked(client_ids=[client_id]))

    async def token(
        self, client_id: str, secret: str, requested: list[str] | None, ttl_s: int | None = None
    ) -> MintedToken:
        """OAuth2 client credentials; raises OAuthError (invalid_client 401, invalid_scope 400)."""
        record = await self._repository.get(client_id)
        if (
            record is None
            or record.secret_hash is None
            or not hashes_equal(record.secret_hash, keyed_hash(self._secret, secret))
        ):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        allowed = set(record.allowed_scopes)
        granted = allowed if requested is None else allowed & set(requested)
        if not granted:
            raise OAuthError("invalid_scope", "none of the requested scopes is allowed for this client")
        return await self._signer.mint(record, granted, ttl_s or self._ttl_s)


def _check_delegation(caller: Principal, scopes: Iterable[str], action: str) -> None:
    """403 unless the caller holds every scope and the whole account a service account's tokens get."""
    if caller.resources is not None:
        held = {grant.type for grant in caller.resources if grant.id == "*"}
        if not {ACCOUNT_FUNCTIONS, AUTHORIZED_FUNCTIONS} <= held:
            raise ForbiddenError(
                f"the caller's resources do not cover the whole account; it cannot {action} a service "
                "account (its tokens see every function of the account)"
            )
    missing = sorted(set(scopes) - caller.scopes)
    if missing:
        raise ForbiddenError(
            f"the caller cannot {action} a service account with scopes it lacks: {', '.join(missing)}"
        )
