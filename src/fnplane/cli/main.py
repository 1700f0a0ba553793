"""The `fnplane` command line (Typer). Thin: it builds settings and calls `fnplane.up` or the SDK.

This module holds the app and the platform commands (`up`, `agent`, `grpc-proxy`, `version`); the
commands that use a platform live one concept a module and call the SDK:

    config.py       login; where the URL and the credential come from (flag > env > config file)
    output.py       --json, Rich tables / plain lines, stderr notes
    session.py      a command's SDK client and the one translation of errors to messages and exit codes
    functions.py    function create | list | get | delete, function version create
    deployments.py  deploy [create] | status | update, undeploy
    invocations.py  invoke, status, cancel
    keys.py         key create | list | revoke, service-account ..., token
    assets.py       asset upload | download | list | delete
    observe.py      queue, logs, gpus

The planes are imported only inside commands, through `fnplane.up`, and the SDK only when a command
runs, so `fnplane --help` stays fast and the CLI depends on nothing but `fnplane.shared` at import time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from fnplane.cli import assets, deployments, functions, invocations, keys, observe, roles, top
from fnplane.cli.config import login
from fnplane.cli.output import JsonOption, Output

app = typer.Typer(
    name="fnplane",
    help="fnplane: a self-hostable, NVCF-compatible serverless platform for GPU inference functions.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

USE = "Use a platform"
RUN = "Run the platform"

app.add_typer(functions.app, name="function", rich_help_panel=USE)
app.add_typer(deployments.app, name="deploy", rich_help_panel=USE)
app.command("undeploy", rich_help_panel=USE)(deployments.undeploy)
app.command("invoke", rich_help_panel=USE)(invocations.invoke)
app.command("status", rich_help_panel=USE)(invocations.status)
app.command("cancel", rich_help_panel=USE)(invocations.cancel)
app.add_typer(keys.key_app, name="key", rich_help_panel=USE)
app.add_typer(keys.service_account_app, name="service-account", rich_help_panel=USE)
app.command("token", rich_help_panel=USE)(keys.token)
app.add_typer(assets.app, name="asset", rich_help_panel=USE)
app.command("queue", rich_help_panel=USE)(observe.queue)
app.command("logs", rich_help_panel=USE)(observe.logs)
app.command("gpus", rich_help_panel=USE)(observe.gpus)
app.command("top", rich_help_panel=USE)(top.top)
app.command("login", rich_help_panel=USE)(login)


def _log_settings(log_format: str | None) -> Any:
    """LogSettings with --log-format (else FNPLANE_LOG_FORMAT, else text); exit code 2 when invalid."""
    from pydantic import ValidationError

    from fnplane.telemetry.logs import LogSettings

    try:
        given: dict[str, Any] = {"format": log_format} if log_format else {}
        return LogSettings(**given)
    except ValidationError as error:
        raise _settings_error(error) from None


def _configure_logging(level: str, log_format: str | None = None) -> None:
    import os

    from fnplane.telemetry.logs import FORMAT_ENV, configure_logging

    settings = _log_settings(log_format)
    # the workers an agent starts inherit this process's environment: they log the same way
    os.environ[FORMAT_ENV] = settings.format.value
    configure_logging(level, settings.format, access=settings.access)
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


@app.command(rich_help_panel=RUN)
def up(
    home: Annotated[
        Path | None, typer.Option(help="Data directory (default: $FNPLANE_HOME or ~/.fnplane).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    http_port: Annotated[int | None, typer.Option(help="Port of the API and gateway (default 8080).")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="Port of the gRPC proxy (default 8081).")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve GET /metrics (Prometheus) on this port; default: none.")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Database URL, e.g. postgresql://... (default: SQLite in the home).")
    ] = None,
    nats_url: Annotated[
        str | None, typer.Option(help="Use this NATS (with JetStream) instead of the embedded nats-server.")
    ] = None,
    nats_creds: Annotated[
        Path | None, typer.Option(help="NATS credentials file (.creds) for --nats-url.")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Where the local backend runs containerArgs (default: current dir).")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="What runs functions: process (containerArgs; default) or container (the image)."),
    ] = None,
    public_url: Annotated[
        str | None, typer.Option(help="Base of the absolute URLs the platform hands out.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS (ALPN h2).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text (default) or json: one object per line (FNPLANE_LOG_FORMAT).")
    ] = None,
    demo: Annotated[
        bool | None,
        typer.Option("--demo", help="Deploy the echo example once up and print the commands to try it."),
    ] = None,
) -> None:
    """Run the whole platform in the foreground: NATS, database, API, gateway and agent.

    Ctrl-C or SIGTERM stops everything, including function processes.
    """
    from pydantic import ValidationError

    from fnplane.up import UpSettings, run_up

    flags: dict[str, Any] = {
        "home": home, "host": host, "http_port": http_port, "grpc_port": grpc_port,
        "database_url": database_url, "nats_url": nats_url, "nats_creds": nats_creds, "workdir": workdir,
        "public_url": public_url, "tls_cert": tls_cert, "tls_key": tls_key, "log_level": log_level,
        "backend": backend, "metrics_port": metrics_port, "demo": demo,
    }  # fmt: skip
    try:
        settings = UpSettings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        raise _settings_error(error) from None
    _configure_logging(settings.log_level, log_format)
    raise typer.Exit(run_up(settings))


@app.command(rich_help_panel=RUN)
def agent(
    nats_url: Annotated[
        str | None, typer.Option(help="NATS URL of the platform (a cluster: URLs, comma-separated).")
    ] = None,
    nats_creds: Annotated[
        Path | None, typer.Option(help="This agent's NATS credentials file (.creds).")
    ] = None,
    control_url: Annotated[
        str | None, typer.Option(help="The control API (http://host:8080), or its replicas, comma-separated.")
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
    backend: Annotated[
        str | None,
        typer.Option(help="What runs functions: process (containerArgs; default) or container (the image)."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve GET /metrics (Prometheus) on this port; default: none.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of the metrics port.")] = "127.0.0.1",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[
        str | None, typer.Option(help="text (default) or json: one object per line (FNPLANE_LOG_FORMAT).")
    ] = None,
) -> None:
    """Run a compute-plane agent alone, so another host can join a platform."""
    from pydantic import ValidationError

    from fnplane.up.agent import run_agent_command

    _configure_logging(log_level, log_format)
    flags: dict[str, Any] = {
        "nats_url": nats_url, "nats_creds": nats_creds, "control_url": control_url, "token_file": token_file,
        "cluster_name": cluster_name, "workdir": workdir, "home": home, "backend": backend,
    }  # fmt: skip
    try:
        overrides = {name: value for name, value in flags.items() if value is not None}
        code = run_agent_command(overrides, metrics_port=metrics_port, metrics_host=metrics_host)
    except ValidationError as error:
        raise _settings_error(error) from None
    raise typer.Exit(code)


@app.command("grpc-proxy", rich_help_panel=RUN)
def grpc_proxy(
    nats_url: Annotated[
        str, typer.Option(help="NATS URL of the platform (a cluster: URLs, comma-separated).")
    ],
    control_url: Annotated[
        str, typer.Option(help="The control API (http://host:8080), or its replicas, comma-separated.")
    ],
    nats_creds: Annotated[
        Path | None, typer.Option(help="A gateway's NATS credentials file (.creds).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    grpc_port: Annotated[int, typer.Option(help="Port of the gRPC proxy.")] = 8081,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM) for the gRPC port.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM) for the gRPC port.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve GET /metrics (Prometheus) on this port; default: none.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[
        str | None, typer.Option(help="text (default) or json: one object per line (FNPLANE_LOG_FORMAT).")
    ] = None,
) -> None:
    """Run the gRPC proxy alone (scale-out): sessions reach workers over NATS only."""
    from fnplane.up.grpc_proxy import run_grpc_proxy

    if (tls_cert is None) != (tls_key is None):
        typer.echo("--tls-cert and --tls-key go together", err=True)
        raise typer.Exit(2)
    _configure_logging(log_level, log_format)
    code = run_grpc_proxy(
        nats_url=nats_url, control_url=control_url, host=host, port=grpc_port,
        nats_creds=nats_creds, tls_cert=tls_cert, tls_key=tls_key, metrics_port=metrics_port,
    )  # fmt: skip
    raise typer.Exit(code)


@app.command(rich_help_panel=RUN)
def version(as_json: JsonOption = False) -> None:
    """Print the fnplane version (--json: {"version": ...})."""
    from importlib.metadata import version as dist_version

    Output(as_json).result({"version": dist_version("fnplane")}, dist_version("fnplane"))


roles.register(app, RUN)  # fnplane control, fnplane gateway, fnplane nats-creds


def main() -> None:
    app()


if __name__ == "__main__":
    main()
