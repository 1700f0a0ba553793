"""API keys: issue, list, get, revoke and re-authorize (`ApiKeyService`).

Behind `/v1/keys` (NVCF API Keys compatible, nvcf-api.md 1.13) with one difference: every call is
made by an authenticated caller holding `manage_keys`; keys are created in the caller's account,
owned by the caller's subject, and never get a scope or resource the caller lacks (403); a caller
changes or revokes only a key whose every scope and resource it holds (403).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from fnplane.control.auth.authenticator import ACTIVE, key_status
from fnplane.control.auth.credentials import ISSUER_SERVICE_ID, key_hint, keyed_hash, new_api_key
from fnplane.control.auth.principal import (
    ACCOUNT_FUNCTIONS,
    AUTHORIZED_FUNCTIONS,
    FUNCTION,
    Principal,
    ResourceGrant,
)
from fnplane.control.auth.revocation import Revoker
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.api_keys import ApiKeyRecord, ApiKeyRepository
from fnplane.shared import revocations
from fnplane.shared.errors import BadRequestError, ForbiddenError, NotFoundError
from fnplane.shared.models.auth import KEY_DESCRIPTION_PATTERN, CreateKeyRequest, KeyAuthorizations, KeyDto
from fnplane.shared.scopes import ADMIN_SCOPES, KNOWN_SCOPE_RULE

DESCRIPTION_RE = re.compile(KEY_DESCRIPTION_PATTERN)
_FUNCTION_RESOURCE_RE = re.compile(r"^[^/\s]+/[^/\s]+$")
RESOURCE_TYPES = (ACCOUNT_FUNCTIONS, AUTHORIZED_FUNCTIONS, FUNCTION)


def wire_time(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds, as the API Keys service writes timestamps."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def default_resources() -> list[dict[str, str]]:
    return [{"type": ACCOUNT_FUNCTIONS, "id": "*"}, {"type": AUTHORIZED_FUNCTIONS, "id": "*"}]


def authorizations_for(
    scopes: Iterable[str], resources: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "policies": [
            {
                "aud": ISSUER_SERVICE_ID,
                "product": "nv-cloud-functions",
                "resources": default_resources() if resources is None else resources,
                "scopes": sorted(set(scopes)),
            }
        ]
    }


def _grant_covered(grant: ResourceGrant, held: tuple[ResourceGrant, ...]) -> bool:
    """May a caller holding `held` hand out `grant`? (a JWT holds everything: never called for it)"""
    if grant.type in (ACCOUNT_FUNCTIONS, AUTHORIZED_FUNCTIONS):
        return any(h.type == grant.type for h in held)
    fid, _, vid = grant.id.partition("/")
    for h in held:
        if h.type in (ACCOUNT_FUNCTIONS, AUTHORIZED_FUNCTIONS):
            return True
        if h.type == FUNCTION:
            hfid, _, hvid = h.id.partition("/")
            if hfid == fid and (hvid == "*" or hvid == vid):
                return True
    return False


class ApiKeyService:
    def __init__(
        self,
        repository: ApiKeyRepository,
        revoker: Revoker,
        *,
        key_hash_secret: str,
        max_keys_per_owner: int,
        max_ttl_days: int,
        max_authz_size_chars: int,
    ) -> None:
        self._repository = repository
        self._revoker = revoker
        self._secret = key_hash_secret
        self._max_keys = max_keys_per_owner
        self._max_ttl = timedelta(days=max_ttl_days)
        self._max_authz_chars = max_authz_size_chars

    # --- without rules: bootstrap and tests -----------------------------------------------------

    async def issue(
        self,
        nca_id: str,
        owner_id: str,
        authorizations: dict[str, Any],
        *,
        description: str = "fnplane key",
        expires_at: datetime | None = None,
        value: str | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """Store a key (generated unless `value` is given) and return it with its one-time value."""
        value = value or new_api_key()
        now = now_utc()
        record = ApiKeyRecord(
            key_id=str(uuid.uuid4()),
            key_hash=keyed_hash(self._secret, value),
            hint=key_hint(value),
            nca_id=nca_id,
            owner_id=owner_id,
            description=description,
            authorizations=authorizations,
            status=ACTIVE,
            created_at=now,
            expires_at=expires_at or now + self._max_ttl,
        )
        await self._repository.insert(record)
        return record, value

    async def exists(self, value: str) -> bool:
        return await self._repository.by_hash(keyed_hash(self._secret, value)) is not None

    async def revoke_value(self, value: str) -> bool:
        """Delete the key with this value (the replaced admin key); False if there is none."""
        record = await self._repository.by_hash(keyed_hash(self._secret, value))
        if record is None or not await self._repository.delete(record.nca_id, record.key_id):
            return False
        await self._revoker.revoked(revocations.revoked(key_ids=[record.key_id]))
        return True

    async def count_for_owner(self, nca_id: str, owner_id: str) -> int:
        return await self._repository.count_for_owner(nca_id, owner_id)

    # --- /v1/keys -----------------------------------------------------------------------------

    async def create(self, caller: Principal, request: CreateKeyRequest) -> KeyDto:
        description = request.description
        if description is None or not DESCRIPTION_RE.match(description):
            raise BadRequestError(
                "description must match ^[a-zA-Z0-9\\s_-]{1,64}$",
                field="description",
                rule="^[a-zA-Z0-9\\s_-]{1,64}$",
            )
        expires_at = request.expires_at
        if expires_at is None:
            raise BadRequestError("expires_at is required", field="expires_at", rule="required")
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        now = now_utc()
        if expires_at <= now:
            raise BadRequestError("expires_at must be in the future", field="expires_at", rule="future")
        if expires_at - now > self._max_ttl:
            days = self._max_ttl.days
            raise BadRequestError(
                f"expires_at must be at most {days} days from now",
                field="expires_at",
                rule=f"max {days} days",
            )
        authorizations = self._validated_authorizations(request.authorizations)
        if request.audience_service_ids is not None:
            if not request.audience_service_ids:
                raise BadRequestError(
                    "audience_service_ids must not be empty", field="audience_service_ids", rule="non-empty"
                )
            unknown = [a for a in request.audience_service_ids if a != ISSUER_SERVICE_ID]
            if unknown:
                raise BadRequestError(
                    f"audience service not allowed: {unknown[0]}",
                    field="audience_service_ids",
                    rule=f"one of [{ISSUER_SERVICE_ID}]",
                )
        self._check_delegation(caller, authorizations, "grant")
        if await self._repository.count_for_owner(caller.nca_id, caller.subject) >= self._max_keys:
            raise BadRequestError(
                "Actor reached maximum allowed number of keys in service",
                field="owner",
                rule=f"at most {self._max_keys} keys per owner",
            )
        record, value = await self.issue(
            caller.nca_id, caller.subject, authorizations, description=description, expires_at=expires_at
        )
        return self.to_dto(record, value=value)

    async def list(self, caller: Principal) -> list[KeyDto]:
        records = await self._repository.list(caller.nca_id)
        return [self.to_dto(r, with_authorizations=False) for r in records]

    async def get(self, caller: Principal, key_id: str) -> KeyDto:
        return self.to_dto(await self._get(caller, key_id))

    async def delete(self, caller: Principal, key_id: str) -> None:
        # a weak key must not revoke a stronger one (the admin key, a colleague's account-wide key)
        self._check_delegation(caller, (await self._get(caller, key_id)).authorizations, "revoke a key with")
        if not await self._repository.delete(caller.nca_id, key_id):
            raise NotFoundError(f"Key '{key_id}' not found")
        await self._revoker.revoked(revocations.revoked(key_ids=[key_id]))

    async def update_authorizations(
        self, caller: Principal, key_id: str, authorizations: KeyAuthorizations | None
    ) -> KeyDto:
        record = await self._get(caller, key_id)
        document = self._validated_authorizations(authorizations)
        status = key_status(record)
        if status != ACTIVE:
            raise BadRequestError(f"Key '{key_id}' is {status}", field="status", rule="key must be ACTIVE")
        # neither take from a key more than the caller holds, nor give it more
        self._check_delegation(caller, record.authorizations, "change a key with")
        self._check_delegation(caller, document, "grant")
        await self._repository.set_authorizations(caller.nca_id, key_id, document)
        # it may do less than before: every gateway re-resolves it
        await self._revoker.revoked(revocations.revoked(key_ids=[key_id]))
        return self.to_dto(await self._get(caller, key_id))

    # --- rules --------------------------------------------------------------------------------

    async def _get(self, caller: Principal, key_id: str) -> ApiKeyRecord:
        record = await self._repository.get(caller.nca_id, key_id)
        if record is None:
            raise NotFoundError(f"Key '{key_id}' not found")
        return record

    def _validated_authorizations(self, authorizations: KeyAuthorizations | None) -> dict[str, Any]:
        if authorizations is None:
            raise BadRequestError("authorizations is required", field="authorizations", rule="required")
        document = authorizations.model_dump(exclude_none=True)
        if len(json.dumps(document, separators=(",", ":"))) > self._max_authz_chars:
            raise BadRequestError(
                f"authorizations must serialize to at most {self._max_authz_chars} characters",
                field="authorizations",
                rule=f"max {self._max_authz_chars} chars",
            )
        for i, policy in enumerate(authorizations.policies):
            for j, scope in enumerate(policy.scopes):
                if scope not in ADMIN_SCOPES:
                    raise BadRequestError(
                        f"unknown scope '{scope}'",
                        field=f"authorizations.policies.{i}.scopes.{j}",
                        rule=KNOWN_SCOPE_RULE,
                    )
            for j, resource in enumerate(policy.resources):
                field = f"authorizations.policies.{i}.resources.{j}"
                if resource.type not in RESOURCE_TYPES:
                    raise BadRequestError(
                        f"unknown resource type '{resource.type}'",
                        field=f"{field}.type",
                        rule=f"one of {', '.join(RESOURCE_TYPES)}",
                    )
                if resource.type == FUNCTION and not _FUNCTION_RESOURCE_RE.match(resource.id):
                    raise BadRequestError(
                        "a function resource id is <functionId>/<versionId|*>",
                        field=f"{field}.id",
                        rule="<functionId>/<versionId|*>",
                    )
        return document

    @staticmethod
    def _check_delegation(caller: Principal, authorizations: dict[str, Any], action: str) -> None:
        """403 unless the caller holds every scope and resource of `authorizations`: it hands out
        nothing it lacks, and changes or revokes no key that can do more than it can."""
        for policy in authorizations.get("policies", []):
            missing = sorted(set(policy.get("scopes", [])) - caller.scopes)
            if missing:
                raise ForbiddenError(f"the caller cannot {action} scopes it lacks: {', '.join(missing)}")
            if caller.resources is None:
                continue
            for resource in policy.get("resources", []):
                grant = ResourceGrant(type=resource["type"], id=resource["id"])
                if not _grant_covered(grant, caller.resources):
                    raise ForbiddenError(f"the caller cannot {action} resource {grant.type}/{grant.id}")

    @staticmethod
    def to_dto(record: ApiKeyRecord, *, value: str | None = None, with_authorizations: bool = True) -> KeyDto:
        return KeyDto(
            id=record.key_id,
            value=value or record.hint,
            status=key_status(record),
            owner_id=record.owner_id,
            issuer_service_id=ISSUER_SERVICE_ID,
            audience_service_ids=[ISSUER_SERVICE_ID],
            description=record.description,
            created_at=wire_time(record.created_at),
            expires_at=wire_time(record.expires_at),
            authorizations=record.authorizations if with_authorizations else None,
        )
