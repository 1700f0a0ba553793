"""Settings of the roles run alone (docs/deploy.md): `fnplane control` (environment prefix
FNPLANE_CONTROL_SERVER_) and `fnplane gateway` (FNPLANE_GATEWAY_SERVER_).

The flags of each command mirror these fields; a flag given on the command line wins. What the
control plane and the gateway themselves read (`ControlSettings`, `GatewaySettings`, the autoscaler's)
still comes from their own variables.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fnplane.up.settings import base_url, reachable_host, valid_log_level


class _ServerFields(BaseModel):
    """What every HTTP role has: where it listens, its NATS, TLS, metrics, logging (the fields of
    both classes below; not a settings class itself)."""

    # the address and port of the HTTP API (0.0.0.0 or :: for every interface)
    host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    # GET /metrics (Prometheus) on this port of `host`; None: no metrics port
    metrics_port: int | None = Field(None, ge=1, le=65535)
    # the platform's NATS (JetStream on); required
    nats_url: str = ""
    # this role's NATS credentials file (.creds; `fnplane nats-creds`); None: an open server
    nats_creds: Path | None = None
    # PEM certificate and key: serve HTTPS (ALPN h2) instead of plain HTTP (h2c and HTTP/1.1)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # how long the first NATS connection and the HTTP port's start may take
    nats_connect_timeout_s: float = Field(10.0, gt=0)
    http_start_timeout_s: float = Field(10.0, gt=0)
    # how long one dependency check of GET /health may take
    health_check_timeout_s: float = Field(2.0, gt=0)
    # after SIGTERM: how long in-flight requests may run on, then how long each part may take to stop
    drain_timeout_s: float = Field(10.0, ge=0)
    stop_timeout_s: float = Field(15.0, gt=0)
    # requests in flight per credential; over the limit: 429 with Retry-After
    max_concurrent_per_credential: int = Field(64, ge=1)
    # a client that sends no request-body data for this long is answered 408
    body_idle_timeout_s: float = Field(30.0, gt=0)
    # HTTP/1.1 request line and headers together, at most (larger: 431); as `fnplane up`'s
    http1_max_header_bytes: int = Field(128 * 1024, ge=8192)
    # HTTP/2: the largest header list, and the streams open at once on one connection
    http2_max_header_bytes: int = Field(64 * 1024, ge=1024)
    http2_max_concurrent_streams: int = Field(1000, ge=1)
    # debug, info, warning or error
    log_level: str = "info"

    @field_validator("tls_cert", "tls_key", "nats_creds")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("nats_url")
    @classmethod
    def _nats_url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("--nats-url is required (the platform's NATS, JetStream on)")
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        return valid_log_level(value)

    @model_validator(mode="after")
    def _tls_pair(self) -> _ServerFields:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key must be given together")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def local_host(self) -> str:
        """An address this process can reach its own port on (0.0.0.0 / :: are not)."""
        return reachable_host(self.host)

    @property
    def local_url(self) -> str:
        return base_url(self.local_host, self.http_port, tls=self.tls)


class ControlServerSettings(_ServerFields, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_CONTROL_SERVER_", populate_by_name=True)

    # the database every replica shares: postgresql://... (SQLite only for a single replica)
    database_url: str = Field(
        "",
        validation_alias=AliasChoices("FNPLANE_CONTROL_SERVER_DATABASE_URL", "FNPLANE_CONTROL_DATABASE_URL"),
    )
    # a file holding the key-hash secret (the same on every replica); else FNPLANE_CONTROL_KEY_HASH_SECRET
    key_hash_secret_file: Path | None = None
    # the seed of the NATS account's signing key (SA...), so that every worker gets a credential of
    # its own (`fnplane nats-creds signing-key`); without it workers use their agent's credential
    nats_signing_key_file: Path | None = None
    # the account's public key (A...), when nats_signing_key_file holds a signing key rather than the
    # account's identity key
    nats_account: str | None = None
    # on an empty database: the admin key is written here (0600) once, when this replica creates it;
    # FNPLANE_ADMIN_KEY registers that value instead
    admin_key_file: Path | None = None
    # registered as the admin key (an `nvapi-` string), on every replica alike
    admin_key: str | None = Field(
        None, validation_alias=AliasChoices("FNPLANE_ADMIN_KEY", "FNPLANE_CONTROL_SERVER_ADMIN_KEY")
    )

    @field_validator("key_hash_secret_file", "nats_signing_key_file", "admin_key_file")
    @classmethod
    def _expand_files(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("--database-url is required (postgresql://... for several replicas)")
        return value.strip()

    @field_validator("admin_key")
    @classmethod
    def _admin_key_format(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("nvapi-") or len(value) < 16):
            raise ValueError("FNPLANE_ADMIN_KEY must be an 'nvapi-' string of at least 16 characters")
        return value or None


class GatewayServerSettings(_ServerFields, BaseSettings):
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
