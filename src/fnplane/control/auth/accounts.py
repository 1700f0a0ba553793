"""Accounts (tenants), managed by super-admins with scope `account_setup` (nvcf-api.md 1.12).

Creating an account with `adminClientId`, or associating one later, registers that client id as a JWT
subject of the account (no secret: it cannot use `POST /token` until a super admin rotates one for it).
Client ids are global: one account each. Disassociating a client deletes it, so its tokens (and a
service account's secret) stop working at once.
"""

from __future__ import annotations

import re

from fnplane.control.auth.api_keys import wire_time
from fnplane.control.auth.principal import Principal
from fnplane.control.auth.revocation import Revoker
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.accounts import AccountRecord, AccountRepository
from fnplane.control.db.repositories.clients import ClientRecord, ClientRepository
from fnplane.control.services.registry_credentials import details as registry_credential_details
from fnplane.control.services.telemetries import details as telemetry_details
from fnplane.shared import revocations
from fnplane.shared.errors import BadRequestError, ConflictError, NotFoundError
from fnplane.shared.models.auth import (
    ACCOUNT_NAME_PATTERN,
    NCA_ID_PATTERN,
    AccountClientRequest,
    AccountDto,
    ClientDto,
    CreateAccountRequest,
    UpdateAccountRequest,
)
from fnplane.shared.scopes import ACCOUNT_SCOPES

NAME_RE = re.compile(ACCOUNT_NAME_PATTERN)
# what the clients table holds (a client id is also the client's name there)
MAX_CLIENT_ID_LENGTH = 128
NCA_ID_RE = re.compile(NCA_ID_PATTERN)


def _check_name(name: str | None) -> str:
    if name is None:
        raise BadRequestError("name is required", field="name", rule="required")
    if not 4 <= len(name) <= 36:
        raise BadRequestError("name must have 4 to 36 characters", field="name", rule="length 4-36")
    if not NAME_RE.match(name):
        raise BadRequestError(
            "name must match ^[a-z0-9A-Z][a-z0-9A-Z\\-_]*$",
            field="name",
            rule="^[a-z0-9A-Z][a-z0-9A-Z\\-_]*$",
        )
    return name


def _check_client_id(client_id: str | None) -> str:
    if client_id is None or not client_id.strip():
        raise BadRequestError("adminClientId must not be blank", field="adminClientId", rule="non-blank")
    if len(client_id) > MAX_CLIENT_ID_LENGTH:
        rule = f"at most {MAX_CLIENT_ID_LENGTH} characters"
        raise BadRequestError(f"adminClientId must have {rule}", field="adminClientId", rule=rule)
    return client_id


def _admin_client(client_id: str, nca_id: str) -> ClientRecord:
    """A JWT subject of the account with its scopes and no secret yet."""
    return ClientRecord(client_id, nca_id, client_id, None, sorted(ACCOUNT_SCOPES), now_utc(), None)


def _check_range(field: str, value: int | None, low: int, high: int | None = None) -> None:
    if value is None:
        return
    if value < low or (high is not None and value > high):
        rule = f">= {low}" if high is None else f"{low}-{high}"
        raise BadRequestError(f"{field} must be {rule}", field=field, rule=rule)


class AccountService:
    def __init__(
        self,
        accounts: AccountRepository,
        clients: ClientRepository,
        revoker: Revoker,
        *,
        default_max_functions: int,
    ) -> None:
        self._accounts = accounts
        self._clients = clients
        self._revoker = revoker
        self._default_max_functions = default_max_functions

    async def create(self, nca_id: str, request: CreateAccountRequest) -> AccountDto:
        if not NCA_ID_RE.match(nca_id):
            raise BadRequestError(
                "ncaId must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                field="ncaId",
                rule="^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
            )
        name = _check_name(request.name)
        _check_range("maxFunctionsAllowed", request.max_functions_allowed, 1)
        _check_range("maxTasksAllowed", request.max_tasks_allowed, 1)
        _check_range("maxTelemetriesAllowed", request.max_telemetries_allowed, 1, 25)
        _check_range("maxRegistryCredentialsAllowed", request.max_registry_credentials_allowed, 1, 25)
        admin_client = request.admin_client_id
        if admin_client is not None:
            _check_client_id(admin_client)
            if await self._clients.get(admin_client) is not None:
                raise ConflictError(f"Client '{admin_client}' already exists")
        limits = {
            key: value
            for key, value in {
                "max_tasks_allowed": request.max_tasks_allowed,
                "max_telemetries_allowed": request.max_telemetries_allowed,
                "max_registry_credentials_allowed": request.max_registry_credentials_allowed,
            }.items()
            if value is not None
        }
        record = await self._accounts.create(
            nca_id, name, request.max_functions_allowed or self._default_max_functions, **limits
        )
        if admin_client is not None:
            await self._clients.insert(_admin_client(admin_client, nca_id))
        return await self._summary(record)

    async def list(self) -> list[AccountDto]:
        return [await self._summary(record) for record in await self._accounts.list_all()]

    async def get(self, nca_id: str) -> AccountDto:
        record = await self._get(nca_id)
        return AccountDto(
            nca_id=record.nca_id,
            client_ids=await self._accounts.client_ids(nca_id),
            name=record.name,
            telemetries=[telemetry_details(r) for r in await self._accounts.telemetries(nca_id)],
            registry_credentials=[
                registry_credential_details(r) for r in await self._accounts.registry_credentials(nca_id)
            ],
            max_functions_allowed=record.max_functions_allowed,
            max_tasks_allowed=record.max_tasks_allowed,
            max_telemetries_allowed=record.max_telemetries_allowed,
            max_registry_credentials_allowed=record.max_registry_credentials_allowed,
            current_number_functions=await self._accounts.count_functions(nca_id),
            last_updated_at=wire_time(record.updated_at),
        )

    async def update(self, nca_id: str, request: UpdateAccountRequest) -> AccountDto:
        changes = request.model_dump(exclude_none=True)
        if not changes:
            raise BadRequestError(
                "at least one of name, maxFunctionsAllowed, maxTasksAllowed, maxTelemetriesAllowed, "
                "maxRegistryCredentialsAllowed is required",
                field="body",
                rule="at least one field",
            )
        if request.name is not None:
            _check_name(request.name)
        _check_range("maxFunctionsAllowed", request.max_functions_allowed, 1)
        _check_range("maxTasksAllowed", request.max_tasks_allowed, 1)
        _check_range("maxTelemetriesAllowed", request.max_telemetries_allowed, 1, 50)
        _check_range("maxRegistryCredentialsAllowed", request.max_registry_credentials_allowed, 1, 50)
        record = await self._accounts.update(nca_id, **changes)
        if record is None:
            raise NotFoundError(f"Account '{nca_id}' not found")
        return await self._summary(record)

    async def delete(self, caller: Principal, nca_id: str) -> None:
        await self._get(nca_id)
        if nca_id == caller.nca_id:
            raise BadRequestError(
                "an account cannot delete itself", field="ncaId", rule="not the caller's account"
            )
        if await self._accounts.count_functions(nca_id) > 0:
            raise BadRequestError(
                f"Account '{nca_id}' still has functions", field="ncaId", rule="account without functions"
            )
        if await self._accounts.is_authorized_party(nca_id):
            raise BadRequestError(
                f"Account '{nca_id}' is an authorized party of a function",
                field="ncaId",
                rule="account not authorized on any function",
            )
        await self._accounts.delete(nca_id)
        # its keys and clients are gone with it
        await self._revoker.revoked(revocations.revoked(nca_ids=[nca_id]))

    async def associate_client(self, nca_id: str, request: AccountClientRequest) -> AccountDto:
        """A new client id for the account; 409 if the id is taken (by this account or another)."""
        client_id = _check_client_id(request.admin_client_id)
        record = await self._get(nca_id)
        await self._clients.insert(_admin_client(client_id, nca_id))
        return await self._summary(record)

    async def disassociate_client(
        self, caller: Principal, nca_id: str, request: AccountClientRequest
    ) -> AccountDto:
        """Remove a client of the account (404 if it is not one); its tokens are refused at once."""
        client_id = _check_client_id(request.admin_client_id)
        record = await self._get(nca_id)
        client = await self._clients.get(client_id)
        if client is None or client.nca_id != nca_id:
            raise NotFoundError(f"Client '{client_id}' is not a client of account '{nca_id}'")
        if caller.extra.get("client_id") == client_id:
            raise BadRequestError(
                "a caller cannot disassociate its own client",
                field="adminClientId",
                rule="not the caller's own client",
            )
        await self._clients.delete(client_id)
        await self._revoker.revoked(revocations.revoked(client_ids=[client_id]))
        return await self._summary(record)

    async def get_client(self, client_id: str) -> ClientDto:
        client = await self._clients.get(client_id)
        if client is None:
            raise NotFoundError(f"Client '{client_id}' not found")
        return ClientDto(client_id=client.client_id, nca_id=client.nca_id, name=client.name)

    async def _get(self, nca_id: str) -> AccountRecord:
        record = await self._accounts.get(nca_id)
        if record is None:
            raise NotFoundError(f"Account '{nca_id}' not found")
        return record

    async def _summary(self, record: AccountRecord) -> AccountDto:
        return AccountDto(
            nca_id=record.nca_id,
            admin_client_ids=await self._accounts.client_ids(record.nca_id),
            name=record.name,
            max_functions_allowed=record.max_functions_allowed,
            max_tasks_allowed=record.max_tasks_allowed,
            max_telemetries_allowed=record.max_telemetries_allowed,
            max_registry_credentials_allowed=record.max_registry_credentials_allowed,
            last_updated_at=wire_time(record.updated_at),
        )
