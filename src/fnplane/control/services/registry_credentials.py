"""Registry credentials (nvcf-api.md 1.9): create, list, get, update, delete; and the login an
instance's image pull gets.

Every endpoint needs `manage_registry_credentials`; a caller sees only its own account's
credentials. The secret (base64 of `username:password`) is sealed with the SecretBox before it is
stored, the credential's id and a fixed name as the seal's associated data (a sealed secret copied
into another row does not open). Answers never carry it. It is opened in one place: the instance
assignment of a function whose image lives on that registry (`login_for_image`), which the agent's
container backend sends with the pull.

NVCF's rules: the host must be a recognized registry (a setting, NVCF's list by default), at most
`maxRegistryCredentialsAllowed` per account (400), a second credential of the same name for the same
host is a 409, SYSTEM-provisioned credentials cannot be changed by users (400).
"""

from __future__ import annotations

import uuid

from fnplane.control.auth.principal import Principal
from fnplane.control.db.repositories import registry_credentials as repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.accounts import AccountRepository
from fnplane.control.db.repositories.registry_credentials import RegistryCredentialRecord
from fnplane.control.db.repositories.transactions import Connection, Database
from fnplane.control.services.secret_box import SecretBox
from fnplane.shared.errors import BadRequestError, NotFoundError
from fnplane.shared.models.compute import RegistryAuth
from fnplane.shared.models.registry_credentials import (
    ArtifactType,
    CreateRegistryCredentialRequest,
    ProvisionedBy,
    RegistryCredentialDetails,
    UpdateRegistryCredentialRequest,
    image_registry,
    login_of,
    recognized,
    registry_name,
)

# the seal's associated "name": a registry secret opens only as one
SEALED_AS = "registry-credential"


def details(record: RegistryCredentialRecord) -> RegistryCredentialDetails:
    return RegistryCredentialDetails(
        registry_credential_id=record.registry_credential_id,
        nca_id=record.nca_id,
        registry_credential_name=record.name,
        registry_name=registry_name(record.hostname),
        registry_hostname=record.hostname,
        artifact_types=[ArtifactType(t) for t in record.artifact_types],
        tags=record.tags,
        description=record.description,
        provisioned_by=ProvisionedBy(record.provisioned_by),
        key_type="BASIC",
        last_updated_at=record.updated_at,
        created_at=record.created_at,
    )


class RegistryCredentialService:
    def __init__(
        self,
        database: Database,
        box: SecretBox,
        accounts: AccountRepository,
        recognized_registries: list[str],
    ) -> None:
        self._database = database
        self._box = box
        self._accounts = accounts
        self._recognized = [r.lower() for r in recognized_registries]

    def recognized_registries(self) -> dict[str, list[dict[str, str]]]:
        entries = [
            {"registryName": registry_name(host), "registryHostname": host} for host in self._recognized
        ]
        return {artifact.value: entries for artifact in ArtifactType}

    async def create(
        self, principal: Principal, request: CreateRegistryCredentialRequest
    ) -> RegistryCredentialDetails:
        host = request.registry_hostname
        if not recognized(host, self._recognized):
            raise BadRequestError(
                f"registry {host} is not a recognized registry ({', '.join(self._recognized)})",
                field="registryHostname",
                rule="must be a recognized registry (GET /v2/nvcf/recognized-registries)",
            )
        account = await self._accounts.get(principal.nca_id)
        limit = account.max_registry_credentials_allowed if account is not None else 25
        credential_id = str(uuid.uuid4())
        now = now_utc()
        record = RegistryCredentialRecord(
            registry_credential_id=credential_id,
            nca_id=principal.nca_id,
            name=request.secret.name,
            hostname=host,
            artifact_types=[t.value for t in request.artifact_types],
            tags=request.tags,
            description=request.description,
            provisioned_by=ProvisionedBy.USER.value,
            secret=self._box.seal(credential_id, SEALED_AS, request.secret.value.strip()),
            created_at=now,
            updated_at=now,
        )
        async with self._database.transaction() as conn:
            if await repo.count(conn, principal.nca_id) >= limit:
                raise BadRequestError(
                    f"account {principal.nca_id} has its maximum of {limit} registry credentials",
                    field="registryHostname",
                    rule=f"at most {limit} registry credentials per account",
                )
            await repo.insert_credential(conn, record)
        return details(record)

    async def list(
        self,
        principal: Principal,
        artifact_types: list[ArtifactType] | None = None,
        provisioned_by: list[ProvisionedBy] | None = None,
    ) -> list[RegistryCredentialDetails]:
        async with self._database.reading() as conn:
            records = await repo.list_credentials(conn, principal.nca_id)
        wanted_types = {t.value for t in artifact_types} if artifact_types else None
        wanted_by = {p.value for p in provisioned_by} if provisioned_by else None
        return [
            details(r)
            for r in records
            if (wanted_types is None or wanted_types & set(r.artifact_types))
            and (wanted_by is None or r.provisioned_by in wanted_by)
        ]

    async def get(self, principal: Principal, credential_id: str) -> RegistryCredentialDetails:
        async with self._database.reading() as conn:
            record = await repo.get(conn, principal.nca_id, credential_id)
        if record is None:
            raise _not_found(credential_id)
        return details(record)

    async def update(
        self, principal: Principal, credential_id: str, request: UpdateRegistryCredentialRequest
    ) -> RegistryCredentialDetails:
        async with self._database.transaction() as conn:
            record = await repo.get(conn, principal.nca_id, credential_id)
            if record is None:
                raise _not_found(credential_id)
            if record.provisioned_by == ProvisionedBy.SYSTEM.value:
                raise BadRequestError(
                    f"registry credential {credential_id} is provisioned by the system",
                    field="registryCredentialId",
                    rule="SYSTEM-provisioned credentials cannot be changed",
                )
            values: dict[str, object] = {"updated_at": now_utc()}
            if request.secret is not None:
                values["secret"] = self._box.seal(credential_id, SEALED_AS, request.secret.value.strip())
            if request.artifact_type_enums:  # NVCF adds them to the ones there are
                merged = list(
                    dict.fromkeys([*record.artifact_types, *(t.value for t in request.artifact_type_enums)])
                )
                values["artifact_types"] = merged
            await repo.update_credential(conn, credential_id, **values)
            record = await repo.get(conn, principal.nca_id, credential_id)
        assert record is not None
        return details(record)

    async def delete(self, principal: Principal, credential_id: str) -> None:
        async with self._database.transaction() as conn:
            if not await repo.delete_credential(conn, principal.nca_id, credential_id):
                raise _not_found(credential_id)


def _not_found(credential_id: str) -> NotFoundError:
    return NotFoundError(f"registry credential {credential_id} not found")


async def login_for_image(
    conn: Connection, box: SecretBox, nca_id: str, image: str | None
) -> RegistryAuth | None:
    """The account's login for the registry of `image`, opened for one instance assignment."""
    if not image:
        return None
    host = image_registry(image)
    record = await repo.for_host(conn, nca_id, host)
    if record is None:
        return None
    secret = box.open(record.registry_credential_id, record.secret)
    if secret is None:
        return None
    try:
        username, password = login_of(secret)
    except ValueError:
        return None
    return RegistryAuth(username=username, password=password, serveraddress=host)
