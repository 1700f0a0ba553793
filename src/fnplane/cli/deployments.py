"""`fnplane deploy ...` and `fnplane undeploy`: a function version's deployment.

`fnplane deploy FID VID --gpu ...` is short for `fnplane deploy create FID VID --gpu ...`: the `deploy`
group reads a first word that is not one of its commands as the start of `create`'s arguments, so both
`fnplane deploy FID VID ...` and `fnplane deploy status FID VID` work as written.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from fnplane.cli.config import ApiKeyOption, UrlOption
from fnplane.cli.output import JsonOption, Output, key
from fnplane.cli.session import EXIT_FAILED, Session, describe, open_session

if TYPE_CHECKING:
    from rich.status import Status


class DeployGroup(TyperGroup):
    """`deploy FID VID ...` runs `deploy create FID VID ...`."""

    default_command = "create"

    # `ctx` is Typer's own (vendored) click Context, which Typer does not export
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DeployGroup,
    no_args_is_help=True,
    help="Deploy a function version: `fnplane deploy FID VID --gpu G --instance-type T [--wait]`; "
    "`deploy status`, `deploy update`.",
)

FunctionIdArgument = Annotated[str, typer.Argument(metavar="FID", help="Function id.")]
VersionIdArgument = Annotated[str, typer.Argument(metavar="VID", help="Version id.")]
GpuOption = Annotated[str, typer.Option("--gpu", help="GPU name, e.g. L40S (see `fnplane gpus`).")]
InstanceTypeOption = Annotated[
    str, typer.Option("--instance-type", help="Instance type, e.g. LOCAL.GPU.L40S_1x (see `fnplane gpus`).")
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option("--concurrency", help="Requests one instance serves at once.", min=1, show_default=False),
]

SPEC_COLUMNS = [
    ("GPU", key("gpu")),
    ("INSTANCE TYPE", key("instanceType")),
    ("MIN", key("minInstances")),
    ("MAX", key("maxInstances")),
    ("CONCURRENCY", key("maxRequestConcurrency")),
]


def show_deployment(out: Output, deployment: dict[str, Any]) -> None:
    out.fields(
        [
            ("function", deployment.get("functionId")),
            ("version", deployment.get("functionVersionId")),
            ("name", deployment.get("functionName")),
            ("status", deployment.get("functionStatus")),
            ("deployment", deployment.get("deploymentId")),
            ("updated", deployment.get("lastUpdatedAt")),
        ]
    )
    out.table(SPEC_COLUMNS, deployment.get("deploymentSpecifications") or [])
    show_health(out, deployment)


def show_health(out: Output, deployment: dict[str, Any]) -> None:
    """The deployment's health entries (why instances failed, what starting ones do), on stderr."""
    for item in deployment.get("healthInfo") or ():
        out.note(f"health: {item.get('gpu')} {item.get('instanceType') or ''}: {item.get('error')}")


def status_line(version: dict[str, Any]) -> str:
    """`DEPLOYING (instances: 1 STARTING)`: a version's status as the live display shows it."""
    status = str(version.get("status", "?"))
    counts = Counter(str(i.get("instanceStatus", "?")) for i in version.get("activeInstances") or ())
    if not counts:
        return status
    return f"{status} (instances: {', '.join(f'{n} {state}' for state, n in sorted(counts.items()))})"


class LiveStatus:
    """What `deploy --wait` shows while waiting, on stderr: on a terminal a spinner with the latest
    status and the seconds waited so far; otherwise a line per change."""

    def __init__(self, out: Output, function_id: str, version_id: str) -> None:
        self._out = out
        self._label = f"{function_id} {version_id}"
        self._spinner: Status | None = None
        self._last = ""
        self._started = time.monotonic()

    def __rich__(self) -> str:
        # rendered again at each refresh of the spinner: the seconds keep counting between changes
        return f"{self._label}: {self._last or 'deploying'} · {time.monotonic() - self._started:.0f} s"

    def __enter__(self) -> LiveStatus:
        if sys.stderr.isatty():
            self._spinner = self._out.stderr.status(self)
            self._spinner.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._spinner is not None:
            self._spinner.stop()  # the spinner vanishes: its last status stays as a line
            if self._last:
                self._out.note(f"{self._label}: {self._last}")

    def __call__(self, version: dict[str, Any]) -> None:
        line = status_line(version)
        if line != self._last:
            self._last = line
            if self._spinner is None:
                self._out.note(f"{self._label}: {line}")


def wait_until_active(session: Session, function_id: str, version_id: str, timeout_s: float) -> None:
    """Wait with the live display; on ERROR, or when `timeout_s` ends first, say so with the
    deployment's health entries and exit 1."""
    from fnplane.sdk import DeploymentFailedError, GatewayTimeoutError

    try:
        with LiveStatus(session.out, function_id, version_id) as live:
            session.client.wait_until_active(function_id, version_id, timeout_s, on_status=live)
    except DeploymentFailedError:
        # the reasons are the deployment's healthInfo, not the version's
        deployment = session.client.get_deployment(function_id, version_id)
        session.out.error(f"Deployment failed: version {version_id} of function {function_id} is ERROR")
        show_health(session.out, deployment)
        raise typer.Exit(EXIT_FAILED) from None
    except GatewayTimeoutError as error:
        # still starting: what its instances say (a health check's answer) is why
        deployment = session.client.get_deployment(function_id, version_id)
        session.out.error(describe(error))
        show_health(session.out, deployment)
        raise typer.Exit(EXIT_FAILED) from None


@app.command("create")
def create(
    function_id: FunctionIdArgument,
    version_id: VersionIdArgument,
    gpu: GpuOption,
    instance_type: InstanceTypeOption,
    min_instances: Annotated[int, typer.Option("--min", help="Minimum instances.", min=0)] = 1,
    max_instances: Annotated[int, typer.Option("--max", help="Maximum instances.", min=1)] = 1,
    concurrency: ConcurrencyOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until ACTIVE (fails on ERROR), showing the status.")
    ] = False,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="Seconds --wait waits at most.", min=1)
    ] = 600.0,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy function version FID VID (also: `fnplane deploy FID VID ...`)."""
    with open_session(url, api_key, as_json) as session:
        deployment = session.client.deploy(
            function_id, version_id, gpu=gpu, instance_type=instance_type, min_instances=min_instances,
            max_instances=max_instances, max_request_concurrency=concurrency,
        )  # fmt: skip
        if wait:
            wait_until_active(session, function_id, version_id, timeout_s)
            deployment = session.client.get_deployment(function_id, version_id)
        session.out.result({"deployment": deployment}, lambda: show_deployment(session.out, deployment))


@app.command("status")
def status(
    function_id: FunctionIdArgument,
    version_id: VersionIdArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the deployment of function version FID VID."""
    with open_session(url, api_key, as_json) as session:
        deployment = session.client.get_deployment(function_id, version_id)
        session.out.result({"deployment": deployment}, lambda: show_deployment(session.out, deployment))


@app.command("update")
def update(
    function_id: FunctionIdArgument,
    version_id: VersionIdArgument,
    gpu: GpuOption,
    instance_type: InstanceTypeOption,
    min_instances: Annotated[
        int | None, typer.Option("--min", help="New minimum instances.", min=0, show_default=False)
    ] = None,
    max_instances: Annotated[
        int | None, typer.Option("--max", help="New maximum instances.", min=1, show_default=False)
    ] = None,
    concurrency: ConcurrencyOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change the instance counts or concurrency of the specification GPU / INSTANCE-TYPE."""
    with open_session(url, api_key, as_json) as session:
        deployment = session.client.update_deployment(
            function_id, version_id, gpu=gpu, instance_type=instance_type, min_instances=min_instances,
            max_instances=max_instances, max_request_concurrency=concurrency,
        )  # fmt: skip
        session.out.result({"deployment": deployment}, lambda: show_deployment(session.out, deployment))


def undeploy(
    function_id: FunctionIdArgument,
    version_id: VersionIdArgument,
    graceful: Annotated[
        bool,
        typer.Option(
            "--graceful", help="NVCF's graceful=true (the same here: instances finish what they hold)."
        ),
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove the deployment of function version FID VID (it becomes INACTIVE)."""
    from fnplane.cli.functions import show_function

    with open_session(url, api_key, as_json) as session:
        function = session.client.undeploy(function_id, version_id, graceful=graceful)
        session.out.result({"function": function}, lambda: show_function(session.out, function))
