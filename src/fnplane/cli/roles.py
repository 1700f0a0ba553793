"""`fnplane control`, `fnplane gateway`, `fnplane nats-creds`: the roles run alone (docs/deploy.md).

Registered on the main app by `register(app)`; like the rest of the CLI they import the planes only
inside the commands, through `fnplane.up`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

# the options both roles have
Host = Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")]
NatsUrl = Annotated[
    str | None, typer.Option(help="The platform's NATS (JetStream; a cluster: URLs, comma-separated).")
]
TlsCert = Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS (ALPN h2).")]
TlsKey = Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")]
MetricsPort = Annotated[
    int | None, typer.Option(help="Serve GET /metrics (Prometheus) on this port; default: none.")
]
LogLevel = Annotated[str | None, typer.Option(help="debug, info, warning or error.")]
LogFormat = Annotated[
    str | None, typer.Option(help="text (default) or json: one object per line (FNPLANE_LOG_FORMAT).")
]


def register(app: typer.Typer, panel: str | None = None) -> None:
    app.command("control", rich_help_panel=panel)(control)
    app.command("gateway", rich_help_panel=panel)(gateway)
    app.command("nats-creds", rich_help_panel=panel)(nats_creds)


def _run(settings_class: Any, flags: dict[str, Any], log_format: str | None, run: Any) -> None:
    """Settings from the environment and the flags given (exit code 2 naming a bad one), then the role."""
    from pydantic import ValidationError

    from fnplane.cli.main import _configure_logging, _settings_error

    try:
        settings = settings_class(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        raise _settings_error(error) from None
    _configure_logging(settings.log_level, log_format)
    raise typer.Exit(run(settings))


def control(
    database_url: Annotated[
        str | None, typer.Option(help="The shared database: postgresql://... (SQLite for one replica only).")
    ] = None,
    nats_url: NatsUrl = None,
    nats_creds: Annotated[
        Path | None, typer.Option(help="This replica's NATS credentials (`fnplane nats-creds control`).")
    ] = None,
    nats_signing_key_file: Annotated[
        Path | None,
        typer.Option(
            help="The NATS account signing key (seed file), so each worker gets its own credential."
        ),
    ] = None,
    nats_account: Annotated[
        str | None,
        typer.Option(help="The account's public key (A...) when the signing key is not its identity."),
    ] = None,
    key_hash_secret_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the key-hash secret (the same on every replica); else "
            "FNPLANE_CONTROL_KEY_HASH_SECRET."
        ),
    ] = None,
    admin_key_file: Annotated[
        Path | None, typer.Option(help="Where the admin key is written when this replica creates it.")
    ] = None,
    host: Host = None,
    http_port: Annotated[int | None, typer.Option(help="Port of the control API (default 8080).")] = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    metrics_port: MetricsPort = None,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
) -> None:
    """Run one control-plane replica: the API, and the reconciler and autoscaler while it holds the lease."""
    from fnplane.up.role_settings import ControlServerSettings
    from fnplane.up.roles import run_control

    flags = {
        "database_url": database_url, "nats_url": nats_url, "nats_creds": nats_creds,
        "nats_signing_key_file": nats_signing_key_file, "nats_account": nats_account,
        "key_hash_secret_file": key_hash_secret_file, "admin_key_file": admin_key_file, "host": host,
        "http_port": http_port, "tls_cert": tls_cert, "tls_key": tls_key, "metrics_port": metrics_port,
        "log_level": log_level,
    }  # fmt: skip
    _run(ControlServerSettings, flags, log_format, run_control)


def gateway(
    nats_url: NatsUrl = None,
    nats_creds: Annotated[
        Path | None, typer.Option(help="This gateway's NATS credentials (`fnplane nats-creds gateway`).")
    ] = None,
    control_url: Annotated[
        str | None, typer.Option(help="The control API (http://host:8080), or its replicas, comma-separated.")
    ] = None,
    public_url: Annotated[
        str | None, typer.Option(help="Base of the absolute URLs the gateway hands out.")
    ] = None,
    host: Host = None,
    http_port: Annotated[int | None, typer.Option(help="Port of the gateway (default 8080).")] = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    metrics_port: MetricsPort = None,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
) -> None:
    """Run one HTTP gateway replica: pexec, exec, status, direct invocation, assets, queues."""
    from fnplane.up.role_settings import GatewayServerSettings
    from fnplane.up.roles import run_gateway

    flags = {
        "nats_url": nats_url, "nats_creds": nats_creds, "control_url": control_url,
        "public_url": public_url, "host": host, "http_port": http_port, "tls_cert": tls_cert,
        "tls_key": tls_key, "metrics_port": metrics_port, "log_level": log_level,
    }  # fmt: skip
    _run(GatewayServerSettings, flags, log_format, run_gateway)


def nats_creds(
    what: Annotated[str, typer.Argument(help="control, gateway, agent, signing-key or server-config.")],
    out: Annotated[Path, typer.Option(help="The file to write (mode 0600).")],
    home: Annotated[
        Path | None,
        typer.Option(
            help="Where the operator keys are (DIR/nats-keys.json; default $FNPLANE_HOME or ~/.fnplane)."
        ),
    ] = None,
    cluster_name: Annotated[str, typer.Option(help="With agent: the cluster the agent registers.")] = "local",
) -> None:
    """Write a role's NATS credentials, the signing key or the nats-server config from DIR's keys.

    The keys are the operator keys `fnplane up` uses (DIR/nats-keys.json, made on first use): run it
    where they are kept, and copy each file to the host of its role only."""
    import os

    from fnplane.up.bus_auth import BusCredentialError, write_nats_material

    directory = home or Path(os.environ.get("FNPLANE_HOME") or "~/.fnplane")
    try:
        typer.echo(write_nats_material(directory.expanduser(), what, out, cluster_name=cluster_name))
    except (BusCredentialError, OSError) as error:
        typer.echo(f"fnplane nats-creds: {error}", err=True)
        raise typer.Exit(2) from None
