"""Looking at what runs: `fnplane queue`, `fnplane logs` and `fnplane gpus`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from fnplane.cli.config import ApiKeyOption, UrlOption
from fnplane.cli.output import JsonOption, Output, key
from fnplane.cli.session import EXIT_FAILED, open_session, usage_error

if TYPE_CHECKING:
    from fnplane.sdk import Client

FunctionIdArgument = Annotated[str, typer.Argument(metavar="FID", help="Function id.")]

QUEUE_COLUMNS = [
    ("VERSION", key("functionVersionId")),
    ("NAME", key("functionName")),
    ("STATUS", key("functionStatus")),
    ("QUEUED", key("queueDepth")),
]
GPU_COLUMNS = [
    ("GPU", key("gpu")),
    ("INSTANCE TYPE", key("instanceType")),
    ("DEFAULT", key("default")),
    ("CLUSTER GROUP", key("clusterGroup")),
    ("CLUSTERS", key("clusters")),
]


def queue(
    function_id: FunctionIdArgument,
    version_id: Annotated[
        str | None, typer.Argument(metavar="VID", help="Only this version.", show_default=False)
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """How many requests wait for each deployed version of FID."""
    with open_session(url, api_key, as_json) as session:
        document = session.client.queue(function_id, version_id)
        rows = document.get("queues") or []
        session.out.result(document, lambda: session.out.table(QUEUE_COLUMNS, rows, empty="no queues"))


def logs(
    function_id: FunctionIdArgument,
    version_id: Annotated[str, typer.Argument(metavar="VID", help="Version id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[int, typer.Option("--tail", help="How many of the last lines.", min=0)] = 100,
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance", help="This instance (default: the version's only one).", show_default=False
        ),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the log (stdout and stderr) of an instance of function version FID VID.

    Without a running instance, the log of the one that failed last (when the agent still has it).
    --json prints {"instanceId", "lines": [...]} (not with --follow).
    """
    from fnplane.sdk import NotFoundError

    with open_session(url, api_key, as_json) as session:
        out, client = session.out, session.client
        if follow and out.as_json:
            raise usage_error(out, "--follow prints lines as they come: not with --json")
        failure = None
        if instance is not None:
            instance_id = instance
        else:
            instance_id, failure = only_instance(out, client, function_id, version_id)
        try:
            if follow:
                for line in client.follow_logs(function_id, version_id, instance_id, tail=tail):
                    out.raw(f"{line}\n".encode())
                return
            text = client.instance_logs(function_id, version_id, instance_id, tail=tail)
        except NotFoundError:
            if failure is None:
                raise
            out.error(f"{failure}; its log is not kept any more")
            raise typer.Exit(EXIT_FAILED) from None
        if out.as_json:
            out.json({"instanceId": instance_id, "lines": text.splitlines()})
        else:
            out.raw(text.encode())


def only_instance(out: Output, client: Client, function_id: str, version_id: str) -> tuple[str, str | None]:
    """The id of the version's one active instance, or with none, of the one that failed last (and
    what the platform says of its end: its exit code, the last lines); with several or none at all,
    say so and exit."""
    version = client.get_version(function_id, version_id)
    instances = [i.get("instanceId") for i in version.get("activeInstances") or () if i.get("instanceId")]
    if len(instances) == 1:
        return str(instances[0]), None
    if instances:
        raise usage_error(
            out, f"{len(instances)} instances: choose one with --instance ({', '.join(instances)})"
        )
    failed = last_failed_instance(client, function_id, version_id)
    if failed is None:
        out.error(f"version {version_id} has no instances (status {version.get('status')})")
        raise typer.Exit(EXIT_FAILED)
    instance_id, error = failed
    failure = (
        f"instance {instance_id} of version {version_id} (status {version.get('status')}) failed: {error}"
    )
    out.note(f"no running instance; the log of {failure.splitlines()[0]}")  # the log has the rest
    return instance_id, failure


def last_failed_instance(client: Client, function_id: str, version_id: str) -> tuple[str, str] | None:
    """(instance id, why it ended) of the version's newest failed instance, from its deployment's
    healthInfo (one entry per failed instance, newest first); None without one."""
    from fnplane.sdk import NotFoundError

    try:
        deployment = client.get_deployment(function_id, version_id)
    except NotFoundError:  # never deployed, or undeployed: nothing is kept
        return None
    for item in deployment.get("healthInfo") or ():
        if item.get("icmsRequestId"):
            return str(item["icmsRequestId"]), str(item.get("error") or "it exited")
    return None


def gpu_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per GPU and instance type of each cluster group."""
    return [
        {
            "gpu": gpu.get("name"),
            "instanceType": instance_type.get("name"),
            "default": instance_type.get("default"),
            "clusterGroup": group.get("name"),
            "clusters": [cluster.get("name") for cluster in group.get("clusters") or ()],
        }
        for group in groups
        for gpu in group.get("gpus") or ()
        for instance_type in gpu.get("instanceTypes") or ()
    ]


def gpus(url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """The GPUs and instance types the registered clusters offer (for `deploy --gpu --instance-type`)."""
    with open_session(url, api_key, as_json) as session:
        groups = session.client.cluster_groups()
        rows = gpu_rows(groups)
        session.out.result(
            {"clusterGroups": groups},
            lambda: session.out.table(GPU_COLUMNS, rows, empty="no GPUs: is an agent registered?"),
        )
