"""The `fnplane` command line (Typer). Thin: it builds settings and calls `fnplane.up` or the SDK.

The planes are imported only inside commands, through `fnplane.up`, so `fnplane --help` stays fast
and the CLI depends on nothing but `fnplane.shared` at import time.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="fnplane",
    help="fnplane: a self-hostable, NVCF-compatible serverless platform for GPU inference functions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level.lower() != "debug":
        # migrations log every plugin at INFO on each start; only their problems matter here
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # one line per agent heartbeat and poll is noise; failures are logged by the agent itself
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _settings_error(error: Exception) -> typer.Exit:
    """Exit code 2 with one line per invalid setting, naming it and the rule it broke."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        for item in error.errors():
            field = ".".join(str(part) for part in item.get("loc", ())) or "settings"
            message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            typer.echo(f"fnplane: invalid setting {field}: {message}", err=True)
    else:
        typer.echo(f"fnplane: invalid setting: {error}", err=True)
    return typer.Exit(2)


@app.command()
def up(
    home: Annotated[
        Path | None, typer.Option(help="Data directory (default: $FNPLANE_HOME or ~/.fnplane).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    http_port: Annotated[int | None, typer.Option(help="Port of the API and gateway (default 8080).")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="Port of the gRPC proxy (default 8081).")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Database URL, e.g. postgresql://... (default: SQLite in the home).")
    ] = None,
    nats_url: Annotated[
        str | None, typer.Option(help="Use this NATS (with JetStream) instead of the embedded nats-server.")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Where the local backend runs containerArgs (default: current dir).")
    ] = None,
    public_url: Annotated[
        str | None, typer.Option(help="Base of the absolute URLs the platform hands out.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS (ALPN h2).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
) -> None:
    """Run the whole platform in the foreground: NATS, database, API, gateway and agent.

    Ctrl-C or SIGTERM stops everything, including function processes.
    """
    from pydantic import ValidationError

    from fnplane.up import UpSettings, run_up

    flags: dict[str, Any] = {
        "home": home, "host": host, "http_port": http_port, "grpc_port": grpc_port,
        "database_url": database_url, "nats_url": nats_url, "workdir": workdir, "public_url": public_url,
        "tls_cert": tls_cert, "tls_key": tls_key, "log_level": log_level,
    }  # fmt: skip
    try:
        settings = UpSettings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        raise _settings_error(error) from None
    _configure_logging(settings.log_level)
    raise typer.Exit(run_up(settings))


@app.command()
def agent(
    nats_url: Annotated[str | None, typer.Option(help="NATS URL of the platform.")] = None,
    control_url: Annotated[
        str | None, typer.Option(help="URL of the control API, e.g. http://host:8080.")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the bearer with scope cluster-management (e.g. DIR/admin-key); "
            "or set FNPLANE_AGENT_TOKEN. Never given on the command line, where `ps` shows it."
        ),
    ] = None,
    cluster_name: Annotated[str | None, typer.Option(help="Name this agent's cluster registers as.")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Where containerArgs run.")] = None,
    home: Annotated[Path | None, typer.Option(help="State directory (process table, instance logs).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run a compute-plane agent alone, so another host can join a platform."""
    from pydantic import ValidationError

    from fnplane.up.agent import run_agent_command

    _configure_logging(log_level)
    flags: dict[str, Any] = {
        "nats_url": nats_url, "control_url": control_url, "token_file": token_file,
        "cluster_name": cluster_name,
        "workdir": workdir, "home": home,
    }  # fmt: skip
    try:
        code = run_agent_command({name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        raise _settings_error(error) from None
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print the fnplane version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("fnplane"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
