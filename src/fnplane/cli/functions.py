"""`fnplane function ...`: register, list, show and delete functions and their versions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from fnplane.cli.config import ApiKeyOption, UrlOption
from fnplane.cli.output import JsonOption, Output, key
from fnplane.cli.session import open_session

app = typer.Typer(
    help="Register, list, show, update and delete functions and their versions.", no_args_is_help=True
)
version_app = typer.Typer(help="Versions of a function.", no_args_is_help=True)
app.add_typer(version_app, name="version")

GRPC_INFERENCE_URL = "/grpc"
# the API's health defaults (reference/nvcf-api.md, `health`)
DEFAULT_HEALTH_URI = "/v2/health/ready"
DEFAULT_INFERENCE_PORT = 8000
DEFAULT_HEALTH_TIMEOUT = "PT10S"

FUNCTION_COLUMNS = [
    ("ID", key("id")),
    ("VERSION", key("versionId")),
    ("NAME", key("name")),
    ("STATUS", key("status")),
    ("INFERENCE URL", key("inferenceUrl")),
    ("CREATED", key("createdAt")),
]


def show_function(out: Output, function: dict[str, Any]) -> None:
    """The key/value block of one function version."""
    instances = function.get("activeInstances")
    out.fields(
        [
            ("id", function.get("id")),
            ("version", function.get("versionId")),
            ("name", function.get("name")),
            ("status", function.get("status")),
            ("inference url", function.get("inferenceUrl")),
            ("inference port", function.get("inferencePort")),
            ("container image", function.get("containerImage")),
            ("container args", function.get("containerArgs")),
            ("health", function.get("health")),
            *([("tags", ", ".join(function["tags"]))] if function.get("tags") else []),
            *([("rate limit", function["rateLimit"].get("rateLimit"))] if function.get("rateLimit") else []),
            ("created", function.get("createdAt")),
            *([("instances", [i.get("instanceId") for i in instances])] if instances else []),
        ]
    )


def parse_env(pairs: list[str]) -> list[dict[str, str]]:
    """`K=V` strings as NVCF's containerEnvironment."""
    environment = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--env")
        environment.append({"key": name, "value": value})
    return environment


@dataclass(frozen=True)
class HealthFlags:
    """`--health-port/-protocol/-timeout/-expected-status-code` (as NVCF's CLI has them): any of them
    makes a `health` object, completed with the API's defaults (reference/nvcf-api.md: uri `healthUri`
    or /v2/health/ready, port `inferencePort` or 8000, PT10S, 200, gRPC for a /grpc function)."""

    uri: str | None = None  # --health-uri: alone, it is sent as the API's `healthUri`, as before
    port: int | None = None
    protocol: str | None = None
    timeout: str | None = None
    expected_status_code: int | None = None

    def given(self) -> bool:
        return any(v is not None for v in (self.port, self.protocol, self.timeout, self.expected_status_code))

    def document(self, fields: dict[str, Any]) -> dict[str, Any]:
        health = dict(fields.get("health") or {})
        grpc = fields.get("inferenceUrl") == GRPC_INFERENCE_URL
        defaults = {
            "protocol": "gRPC" if grpc else "HTTP",
            "uri": fields.get("healthUri") or DEFAULT_HEALTH_URI,
            "port": fields.get("inferencePort") or DEFAULT_INFERENCE_PORT,
            "timeout": DEFAULT_HEALTH_TIMEOUT,
            "expectedStatusCode": 200,
        }
        flags = {
            "uri": self.uri,
            "protocol": self.protocol,
            "port": self.port,
            "timeout": self.timeout,
            "expectedStatusCode": self.expected_status_code,
        }
        health.update({k: v for k, v in flags.items() if v is not None})
        return {**defaults, **health}


def function_fields(
    *,
    input_file: Path | None,
    name: str | None,
    inference_url: str | None,
    container_image: str | None,
    container_args: str | None,
    env: list[str],
    inference_port: int | None,
    health_uri: str | None,
    grpc: bool,
    description: str | None,
    function_type: str | None,
    tags: list[str],
    health: HealthFlags | None = None,
) -> dict[str, Any]:
    """The registration body: the input file's fields, overridden by the flags given."""
    fields: dict[str, Any] = {}
    if input_file is not None:
        try:
            fields = json.loads(input_file.read_text())
        except (OSError, ValueError) as error:
            raise typer.BadParameter(str(error), param_hint="--input-file") from None
        if not isinstance(fields, dict):
            raise typer.BadParameter("not a JSON object", param_hint="--input-file")
    if grpc:
        if inference_url not in (None, GRPC_INFERENCE_URL):
            raise typer.BadParameter(f"a gRPC function's inference URL is {GRPC_INFERENCE_URL}")
        inference_url = GRPC_INFERENCE_URL
    flags = {
        "name": name,
        "inferenceUrl": inference_url,
        "containerImage": container_image,
        "containerArgs": container_args,
        "containerEnvironment": parse_env(env) if env else None,
        "inferencePort": inference_port,
        "healthUri": health_uri,
        "description": description,
        "functionType": function_type,
        "tags": tags or None,
    }
    fields.update({field: value for field, value in flags.items() if value is not None})
    if health is not None and health.given():
        fields["health"] = health.document(fields)
        fields.pop("healthUri", None)
    for required, flag in (("name", "--name"), ("inferenceUrl", "--inference-url")):
        if not fields.get(required):
            raise typer.BadParameter(f"missing option {flag} (or {required} in --input-file)")
    return fields


@app.command("create")
def create(
    ctx: typer.Context,
    function_id: Annotated[
        str | None,
        typer.Argument(
            metavar="FID", help="An existing function: register a new version of it.", show_default=False
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Function name.", show_default=False)] = None,
    inference_url: Annotated[
        str | None, typer.Option(help="Path that pexec calls, e.g. /echo.", show_default=False)
    ] = None,
    container_image: Annotated[str | None, typer.Option(help="Container image.", show_default=False)] = None,
    container_args: Annotated[
        str | None, typer.Option(help="Command line the local backend runs.", show_default=False)
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="Environment variable K=V (repeatable).")
    ] = None,
    inference_port: Annotated[
        int | None, typer.Option(help="Port the function listens on.", show_default=False)
    ] = None,
    health_uri: Annotated[str | None, typer.Option(help="Health check path.", show_default=False)] = None,
    health_port: Annotated[
        int | None,
        typer.Option(help="Port of the health check, when not the inference port.", show_default=False),
    ] = None,
    health_protocol: Annotated[
        str | None, typer.Option(help="HTTP or gRPC (default: gRPC for --grpc).", show_default=False)
    ] = None,
    health_timeout: Annotated[
        str | None, typer.Option(help="ISO 8601 duration, e.g. PT30S (default PT10S).", show_default=False)
    ] = None,
    health_expected_status_code: Annotated[
        int | None, typer.Option(help="Status of a healthy answer (default 200).", show_default=False)
    ] = None,
    grpc: Annotated[bool, typer.Option("--grpc", help="A gRPC function (inference URL /grpc).")] = False,
    description: Annotated[str | None, typer.Option(help="Description.", show_default=False)] = None,
    function_type: Annotated[
        str | None, typer.Option(help="DEFAULT or STREAMING.", show_default=False)
    ] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(help="JSON body of the registration; flags override its fields.", show_default=False),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a function (its first version); with FID, a new version of that function."""
    if function_id is None and ctx.parent is not None and ctx.parent.info_name == "version":
        raise typer.BadParameter("missing argument FID", param_hint="FID")
    health = HealthFlags(
        health_uri, health_port, health_protocol, health_timeout, health_expected_status_code
    )
    fields = function_fields(
        input_file=input_file, name=name, inference_url=inference_url, container_image=container_image,
        container_args=container_args, env=env or [], inference_port=inference_port, health_uri=health_uri,
        grpc=grpc, description=description, function_type=function_type, tags=tags or [],
        health=health,
    )  # fmt: skip
    with open_session(url, api_key, as_json) as session:
        if function_id is None:
            function = session.client.create_function(**fields)
        else:
            function = session.client.create_version(function_id, **fields)
        session.out.result({"function": function}, lambda: show_function(session.out, function))


# `fnplane function version create FID ...`: the same command, FID required
version_app.command(
    "create", help="Register a new version of function FID (the flags of `function create`)."
)(create)


@app.command("list")
def list_(
    visibility: Annotated[
        str | None, typer.Option(help="authorized, private or public (comma-separated).", show_default=False)
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the functions (every version) the credential can see."""
    with open_session(url, api_key, as_json) as session:
        functions = session.client.list_functions(visibility)
        session.out.listing({"functions": functions}, FUNCTION_COLUMNS, empty="no functions")


@app.command("get")
def get(
    function_id: Annotated[str, typer.Argument(metavar="FID", help="Function id.")],
    version_id: Annotated[
        str | None, typer.Argument(metavar="VID", help="Version id: show that version.", show_default=False)
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one version of a function, or list the versions of FID."""
    with open_session(url, api_key, as_json) as session:
        if version_id is None:
            versions = session.client.list_versions(function_id)
            session.out.listing({"functions": versions}, FUNCTION_COLUMNS, empty="no versions")
            return
        function = session.client.get_version(function_id, version_id)
        session.out.result({"function": function}, lambda: show_function(session.out, function))


@app.command("update")
def update(
    function_id: Annotated[str, typer.Argument(metavar="FID", help="Function id.")],
    version_id: Annotated[str, typer.Argument(metavar="VID", help="Version id.")],
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag (repeatable): the version's tags become these.")
    ] = None,
    clear_tags: Annotated[bool, typer.Option("--clear-tags", help="Remove every tag.")] = False,
    rate_limit: Annotated[
        str | None, typer.Option(help="Rate limit, e.g. 100-S or 10-M,5-S.", show_default=False)
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a version's tags or rate limit (the rest of a version cannot change)."""
    if tags and clear_tags:
        raise typer.BadParameter("--tag and --clear-tags exclude each other", param_hint="--clear-tags")
    if not tags and not clear_tags and rate_limit is None:
        raise typer.BadParameter("give --tag, --clear-tags or --rate-limit")
    with open_session(url, api_key, as_json) as session:
        function = session.client.update_function(
            function_id,
            version_id,
            tags=[] if clear_tags else tags or None,
            rate_limit={"rateLimit": rate_limit} if rate_limit is not None else None,
        )
        session.out.result({"function": function}, lambda: show_function(session.out, function))


@app.command("delete")
def delete(
    function_id: Annotated[str, typer.Argument(metavar="FID", help="Function id.")],
    version_id: Annotated[str, typer.Argument(metavar="VID", help="Version id.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a function version, with its deployment (its instances stop). --json prints {}."""
    with open_session(url, api_key, as_json) as session:
        session.client.delete_version(function_id, version_id)
        session.out.result({}, f"deleted version {version_id} of function {function_id}")
