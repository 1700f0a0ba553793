"""Wire models of accounts, API keys, service accounts and tokens.

* `/v1/keys...` mirrors NVCF's API Keys service (nvcf-api.md 1.13): **snake_case**, timestamps with
  milliseconds, nulls omitted.
* `/v2/nvcf/accounts...` mirrors NVCF's account endpoints (1.12): camelCase.
* `/v2/nvcf/service-accounts...` is an fnplane extension in the same camelCase style.
* `POST /token` is RFC 6749 client credentials (form in, JSON out).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fnplane.shared.models.registry_credentials import RegistryCredentialDetails
from fnplane.shared.models.telemetries import TelemetryDto
from fnplane.shared.models.wire import Int32, documented_string
from fnplane.shared.scopes import ADMIN_SCOPES

# The rules the control plane checks these fields by (in its services, so each 400 names NVCF's rule
# exactly); the OpenAPI document states them too, so clients and fuzzers know what is accepted.
ACCOUNT_NAME_PATTERN = r"^[a-z0-9A-Z][a-z0-9A-Z\-_]*$"
NCA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
KEY_DESCRIPTION_PATTERN = r"^[a-zA-Z0-9\s_-]{1,64}$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{2,127}$"


def _scope_list(schema: dict[str, Any]) -> None:
    """A service account's scopes: at least one, each a scope fnplane knows."""
    schema.pop("anyOf", None)
    schema.pop("default", None)
    schema.update(type="array", items={"type": "string", "enum": sorted(ADMIN_SCOPES)}, minItems=1)


class SnakeModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# --- API keys (snake_case) ---------------------------------------------------------------------


class KeyResource(SnakeModel):
    id: str
    type: str


class KeyPolicy(SnakeModel):
    aud: str | None = None
    auds: list[str] | None = None
    product: str | None = None
    resources: list[KeyResource] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)


class KeyAuthorizations(SnakeModel):
    policies: list[KeyPolicy] = Field(default_factory=list)


class CreateKeyRequest(SnakeModel):
    # validated by the service (not here) so the 400 names NVCF's rule exactly; documented as required
    model_config = ConfigDict(json_schema_extra={"required": ["description"]})

    description: str | None = Field(
        None, json_schema_extra=documented_string(pattern=KEY_DESCRIPTION_PATTERN)
    )
    expires_at: datetime | None = None
    authorizations: KeyAuthorizations | None = None
    audience_service_ids: list[str] | None = None


class UpdateKeyAuthorizationsRequest(SnakeModel):
    authorizations: KeyAuthorizations | None = None


class KeyDto(SnakeModel):
    id: str
    value: str | None = None
    status: str  # ACTIVE | EXPIRED | SUSPENDED
    owner_type: str = "USER"
    owner_id: str
    issuer_service_id: str
    audience_service_ids: list[str]
    description: str
    created_at: str
    expires_at: str
    authorizations: dict[str, Any] | None = None


class KeyList(SnakeModel):
    keys: list[KeyDto]


# --- service accounts (camelCase, fnplane extension) -------------------------------------------


class CreateServiceAccountRequest(CamelModel):
    # validated by the service; documented here
    model_config = ConfigDict(json_schema_extra={"required": ["scopes"]})

    # optional: null or absent is a generated id
    client_id: str | None = Field(None, json_schema_extra={"pattern": CLIENT_ID_PATTERN})
    name: str | None = None
    scopes: list[str] | None = Field(None, json_schema_extra=_scope_list)


class ServiceAccountDto(CamelModel):
    client_id: str
    nca_id: str
    name: str
    scopes: list[str]
    created_at: str
    secret_rotated_at: str | None = None
    # only in the answer to create and rotate
    client_secret: str | None = None


class ServiceAccountResponse(CamelModel):
    service_account: ServiceAccountDto


class ServiceAccountList(CamelModel):
    service_accounts: list[ServiceAccountDto]


class TokenResponse(SnakeModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str


# --- accounts (camelCase, NVCF super-admin) ----------------------------------------------------


class CreateAccountRequest(CamelModel):
    # validated by the service; documented here
    model_config = ConfigDict(json_schema_extra={"required": ["name"]})

    name: str | None = Field(
        None, json_schema_extra=documented_string(pattern=ACCOUNT_NAME_PATTERN, minLength=4, maxLength=36)
    )
    admin_client_id: str | None = None
    registry_credentials: list[RegistryCredentialDetails] | None = None
    max_functions_allowed: Int32 | None = None
    max_tasks_allowed: Int32 | None = None
    max_telemetries_allowed: Int32 | None = None
    max_registry_credentials_allowed: Int32 | None = None


class UpdateAccountRequest(CamelModel):
    name: str | None = None
    max_functions_allowed: Int32 | None = None
    max_tasks_allowed: Int32 | None = None
    max_telemetries_allowed: Int32 | None = None
    max_registry_credentials_allowed: Int32 | None = None


class AccountDto(CamelModel):
    nca_id: str
    admin_client_ids: list[str] | None = None
    client_ids: list[str] | None = None
    name: str
    telemetries: list[TelemetryDto] | None = None
    registry_credentials: list[RegistryCredentialDetails] | None = None
    max_functions_allowed: int
    max_tasks_allowed: int
    max_telemetries_allowed: int
    max_registry_credentials_allowed: int
    current_number_functions: int | None = None
    last_updated_at: str


class AccountResponse(CamelModel):
    account: AccountDto


class AccountClientRequest(CamelModel):
    """Body of `PATCH /v2/nvcf/accounts/{ncaId}/clients/associate` and `/disassociate`."""

    # validated by the service; documented here
    model_config = ConfigDict(json_schema_extra={"required": ["adminClientId"]})

    admin_client_id: str | None = Field(None, json_schema_extra=documented_string(minLength=1))


class ClientDto(CamelModel):
    """`GET /v2/nvcf/clients/{clientId}`: a JWT subject and the account it belongs to."""

    client_id: str
    nca_id: str
    name: str


class ClientResponse(CamelModel):
    client: ClientDto


class AccountList(CamelModel):
    cloud_accounts: list[AccountDto]
