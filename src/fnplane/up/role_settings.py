"""Settings of the roles run alone (docs/deploy.md): `fnplane control` (environment prefix
FNPLANE_CONTROL_SERVER_) and `fnplane gateway` (FNPLANE_GATEWAY_SERVER_).

The flags of each command mirror these fields; a flag given on the command line wins. What the
control plane and the gateway themselves read (`ControlSettings`, `GatewaySettings`, the autoscaler's)
still comes from their own variables.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fnplane.up.settings import ServingSettings, UserPath, valid_admin_key


class RoleFields(ServingSettings):
    """What both roles have besides the HTTP port: the platform's NATS and the per-credential bound
    (not a settings class itself)."""

    # the platform's NATS (JetStream on); required
    nats_url: str = ""
    # this role's NATS credentials file (.creds; `fnplane nats-creds`); None: an open server
    nats_creds: UserPath | None = None
    # how long the first NATS connection may take
    nats_connect_timeout_s: float = Field(10.0, gt=0)
    # requests in flight per credential; over the limit: 429 with Retry-After
    max_concurrent_per_credential: int = Field(64, ge=1)

    @field_validator("nats_url")
    @classmethod
    def _nats_url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("--nats-url is required (the platform's NATS, JetStream on)")
        return value.strip()


class ControlServerSettings(RoleFields, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_CONTROL_SERVER_", populate_by_name=True)

    # the database every replica shares: postgresql://... (SQLite only for a single replica)
    database_url: str = Field(
        "",
        validation_alias=AliasChoices("FNPLANE_CONTROL_SERVER_DATABASE_URL", "FNPLANE_CONTROL_DATABASE_URL"),
    )
    # a file holding the key-hash secret (the same on every replica); else FNPLANE_CONTROL_KEY_HASH_SECRET
    key_hash_secret_file: UserPath | None = None
    # the seed of the NATS account's signing key (SA...), so that every worker gets a credential of
    # its own (`fnplane nats-creds signing-key`); without it workers use their agent's credential
    nats_signing_key_file: UserPath | None = None
    # the account's public key (A...), when nats_signing_key_file holds a signing key rather than the
    # account's identity key
    nats_account: str | None = None
    # on an empty database: the admin key is written here (0600) once, when this replica creates it;
    # FNPLANE_ADMIN_KEY registers that value instead
    admin_key_file: UserPath | None = None
    # registered as the admin key (an `nvapi-` string), on every replica alike
    admin_key: str | None = Field(
        None, validation_alias=AliasChoices("FNPLANE_ADMIN_KEY", "FNPLANE_CONTROL_SERVER_ADMIN_KEY")
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("--database-url is required (postgresql://... for several replicas)")
        return value.strip()

    @field_validator("admin_key")
    @classmethod
    def _admin_key_format(cls, value: str | None) -> str | None:
        return valid_admin_key(value)


class GatewayServerSettings(RoleFields, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_GATEWAY_SERVER_", populate_by_name=True)

    # the control API this gateway asks about access and wakes versions through (a load balancer in
    # front of the control replicas, or one of them); required
    control_url: str = ""
    # base of the absolute URLs handed out (asset uploadUrl, large-result Location); empty: the
    # request's own scheme and Host
    public_url: str = ""
    # requests in flight per credential (invocations); over the limit: 429 with Retry-After
    max_concurrent_per_credential: int = Field(2000, ge=1)

    @field_validator("control_url")
    @classmethod
    def _control_url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("--control-url is required (the control API, e.g. http://control:8080)")
        return value.strip().rstrip("/")
