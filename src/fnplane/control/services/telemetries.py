"""Telemetries (nvcf-api.md 1.10): create, list, get, delete; the secret's update (1.7); and the check
of the `telemetries` a function version names (2.1).

Every endpoint needs `manage_telemetries` (the secret's update `update_secrets`); a caller sees only its
own account's telemetries, another account's id is a 404. The secret is sealed with the SecretBox
before it is stored, the telemetry's id and a fixed name as the seal's associated data (a sealed
secret copied into another row does not open); answers never carry it. fnplane records telemetries
and checks the references to them, but exports nothing to them (docs/compatibility.md).

NVCF's rules: the telemetry's name is its secret's name, unique in the account (400); at most
`maxTelemetriesAllowed` per account (400); a telemetry that a function version names cannot be deleted
(400). A version's `logsTelemetryId` must name a telemetry of the caller's account whose types include
LOGS, and so on for metrics and traces (400 naming the field).
"""

from __future__ import annotations

import uuid

from fnplane.control.auth.principal import Principal
from fnplane.control.db.repositories import telemetries as repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.accounts import AccountRepository
from fnplane.control.db.repositories.telemetries import DuplicateTelemetryNameError, TelemetryRecord
from fnplane.control.db.repositories.transactions import Connection, Database
from fnplane.control.services.secret_box import SecretBox
from fnplane.shared.errors import BadRequestError, NotFoundError
from fnplane.shared.models.functions import TelemetriesDto
from fnplane.shared.models.telemetries import (
    CreateTelemetryRequest,
    TelemetryDto,
    TelemetryProtocol,
    TelemetryProvider,
    TelemetryType,
    UpdateTelemetrySecretRequest,
)

# the seal's associated "name": a telemetry secret opens only as one
SEALED_AS = "telemetry"


def details(record: TelemetryRecord) -> TelemetryDto:
    return TelemetryDto(
        telemetry_id=uuid.UUID(record.telemetry_id),
        name=record.name,
        endpoint=record.endpoint,
        protocol=TelemetryProtocol(record.protocol),
        provider=TelemetryProvider(record.provider),
        types=[TelemetryType(t) for t in record.types],
        created_at=record.created_at,
    )


class TelemetryService:
    def __init__(self, database: Database, box: SecretBox, accounts: AccountRepository) -> None:
        self._database = database
        self._box = box
        self._accounts = accounts

    async def create(self, principal: Principal, request: CreateTelemetryRequest) -> TelemetryDto:
        account = await self._accounts.get(principal.nca_id)
        if account is None:
            raise NotFoundError(f"Account '{principal.nca_id}' not found")
        limit = account.max_telemetries_allowed
        telemetry_id = str(uuid.uuid4())
        now = now_utc()
        record = TelemetryRecord(
            telemetry_id=telemetry_id,
            nca_id=principal.nca_id,
            name=request.secret.name,
            endpoint=request.endpoint,
            protocol=request.protocol.value,
            provider=request.provider.value,
            types=[t.value for t in request.types],
            secret=self._box.seal(telemetry_id, SEALED_AS, request.secret.as_text()),
            created_at=now,
            updated_at=now,
        )
        async with self._database.transaction() as conn:
            await repo.lock_account(conn, principal.nca_id)
            held = await repo.count(conn, principal.nca_id)
            if held >= limit:
                raise BadRequestError(
                    f"Account '{principal.nca_id}': Cannot create telemetry - maximum allowed "
                    f"telemetries ({limit}) exceeded. Current count: {held}",
                    field="body",
                    rule=f"at most {limit} telemetries per account (maxTelemetriesAllowed)",
                )
            try:
                await repo.insert_telemetry(conn, record)
            except DuplicateTelemetryNameError:
                raise BadRequestError(
                    f"Account '{principal.nca_id}': Telemetry and corresponding secret with name "
                    f"'{record.name}' already exists in the account - Telemetries must have unique "
                    "names within an account",
                    field="secret.name",
                    rule="must be unique among the account's telemetries",
                ) from None
        return details(record)

    async def list(self, principal: Principal) -> list[TelemetryDto]:
        async with self._database.reading() as conn:
            return [details(r) for r in await repo.list_telemetries(conn, principal.nca_id)]

    async def get(self, principal: Principal, telemetry_id: str) -> TelemetryDto:
        telemetry_id = _known_form(principal.nca_id, telemetry_id)
        async with self._database.reading() as conn:
            record = await repo.get(conn, principal.nca_id, telemetry_id)
        if record is None:
            raise _not_found(principal.nca_id, telemetry_id)
        return details(record)

    async def delete(self, principal: Principal, telemetry_id: str) -> None:
        telemetry_id = _known_form(principal.nca_id, telemetry_id)
        async with self._database.transaction() as conn:
            # locked first: a version being registered with it holds it (`require_telemetries`)
            if await repo.get(conn, principal.nca_id, telemetry_id, lock="update") is None:
                raise _not_found(principal.nca_id, telemetry_id)
            users = await repo.versions_using(conn, principal.nca_id, telemetry_id)
            if users:
                uses = "; ".join(f"function id '{f}', version '{v}'" for f, v in users)
                raise BadRequestError(
                    f"Telemetry '{telemetry_id}': Cannot be deleted as it is in use by {uses} - "
                    "Delete the function first to be able to delete the telemetry.",
                    field="telemetryId",
                    rule="must not be named by a function version's telemetries",
                )
            await repo.delete_telemetry(conn, principal.nca_id, telemetry_id)

    async def update_secret(
        self, principal: Principal, telemetry_id: str, request: UpdateTelemetrySecretRequest
    ) -> None:
        """Replace the secret's value; the telemetry keeps its name (NVCF renames nothing either)."""
        telemetry_id = _known_form(principal.nca_id, telemetry_id)
        async with self._database.transaction() as conn:
            if await repo.get(conn, principal.nca_id, telemetry_id) is None:
                raise _not_found(principal.nca_id, telemetry_id)
            sealed = self._box.seal(telemetry_id, SEALED_AS, request.secret.as_text())
            await repo.update_telemetry(conn, telemetry_id, secret=sealed, updated_at=now_utc())


def _not_found(nca_id: str, telemetry_id: str) -> NotFoundError:
    return NotFoundError(f"Account '{nca_id}' Telemetry '{telemetry_id}': Not found")


def _known_form(nca_id: str, telemetry_id: str) -> str:
    """The id as it is stored (a lower-case UUID); anything else names no telemetry (404), and never
    reaches the database (PostgreSQL refuses a NUL in a string)."""
    try:
        return str(uuid.UUID(telemetry_id))
    except ValueError:
        raise _not_found(nca_id, telemetry_id[:64]) from None


# the fields of a version's `telemetries` and the type each one's telemetry must have
_REFERENCES = (
    ("logsTelemetryId", "logs_telemetry_id", TelemetryType.LOGS),
    ("metricsTelemetryId", "metrics_telemetry_id", TelemetryType.METRICS),
    ("tracesTelemetryId", "traces_telemetry_id", TelemetryType.TRACES),
)


async def require_telemetries(conn: Connection, nca_id: str, telemetries: TelemetriesDto | None) -> None:
    """The ids a new version names are telemetries of its account with the matching type (400
    naming the field otherwise). In the transaction that stores the version: each telemetry is held
    (PostgreSQL) until it commits, so a concurrent delete sees the version and refuses."""
    if telemetries is None:
        return
    for wire_name, attribute, wanted in _REFERENCES:
        telemetry_id = getattr(telemetries, attribute)
        if telemetry_id is None:
            continue
        field = f"telemetries.{wire_name}"
        record = await repo.get(conn, nca_id, str(telemetry_id), lock="share")
        if record is None:
            raise BadRequestError(
                f"Validation failed: field '{field}': telemetry '{telemetry_id}' not found in "
                f"account '{nca_id}'",
                field=field,
                rule="must be the id of a telemetry of the caller's account",
            )
        if wanted.value not in record.types:
            raise BadRequestError(
                f"Validation failed: field '{field}': Invalid telemetry type: telemetry "
                f"'{telemetry_id}' has types {', '.join(record.types)}, not {wanted.value}",
                field=field,
                rule=f"must name a telemetry whose types include {wanted.value}",
            )
