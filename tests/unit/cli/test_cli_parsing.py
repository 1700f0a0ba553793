"""The CLI's pure parts: durations, scopes, the `deploy FID VID` shorthand, output shapes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import typer
from typer.testing import CliRunner

from fnplane.cli.deployments import status_line
from fnplane.cli.invocations import envelope
from fnplane.cli.keys import parse_duration, scope_list
from fnplane.cli.main import app
from fnplane.cli.observe import gpu_rows
from fnplane.cli.output import text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 7D ", timedelta(days=7)),
        ("3600", timedelta(hours=1)),
    ],
)
def test_durations(value: str, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["", "30", "d", "30x", "1.5d", "-1d", "0d", "30d junk", "d30"])
def test_bad_durations_are_refused(value: str) -> None:
    if value == "30":
        assert parse_duration(value) == timedelta(seconds=30)
        return
    with pytest.raises(typer.BadParameter):
        parse_duration(value)


def test_scopes_repeat_or_separate_by_commas() -> None:
    assert scope_list(["invoke_function,list_functions", "queue_details"]) == [
        "invoke_function",
        "list_functions",
        "queue_details",
    ]


def test_a_bad_expiry_exits_2_before_any_request() -> None:
    # no platform at this URL: the duration is checked first
    result = CliRunner().invoke(
        app,
        [
            "key",
            "create",
            "--scope",
            "invoke_function",
            "--expires-in",
            "soon",
            "--url",
            "http://127.0.0.1:9",
        ],
    )
    assert result.exit_code == 2
    assert "not a duration" in result.stderr


def test_deploy_fid_vid_is_deploy_create() -> None:
    runner = CliRunner()
    # the shorthand reaches `deploy create`, which names its missing option
    result = runner.invoke(app, ["deploy", "f-1", "v-1", "--instance-type", "T"])
    assert result.exit_code == 2
    assert "--gpu" in result.stderr
    # `deploy status` stays a command of its own, not a function id
    result = runner.invoke(app, ["deploy", "status", "--help"])
    assert result.exit_code == 0
    assert "Show the deployment" in result.stdout
    assert runner.invoke(app, ["deploy", "--help"]).exit_code == 0


def test_function_version_create_needs_the_function_id() -> None:
    result = CliRunner().invoke(
        app, ["function", "version", "create", "--name", "n", "--inference-url", "/x"]
    )
    assert result.exit_code == 2
    assert "FID" in result.stderr


def test_every_command_but_the_servers_takes_json() -> None:
    import typer.main

    def leaves(command: object, path: str) -> list[tuple[str, object]]:
        children = getattr(command, "commands", None)
        if not children:
            return [(path, command)]
        return [leaf for name, child in children.items() for leaf in leaves(child, f"{path} {name}")]

    servers = {"up", "agent", "grpc-proxy", "control", "gateway", "nats-creds"}
    without = [
        path
        for path, command in leaves(typer.main.get_command(app), "")
        if path.split()[0] not in servers
        and "--json" not in {opt for param in command.params for opt in param.opts}
    ]
    assert not without, f"no --json: {without}"


def test_version_json() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["version", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"version": version("fnplane")}
    assert CliRunner().invoke(app, ["version"]).stdout == version("fnplane") + "\n"


def test_the_envelope_is_nvcf_exec_shape() -> None:
    assert envelope("r", 200, b'{"a": 1}') == {
        "reqId": "r",
        "status": "fulfilled",
        "response": {"a": 1},
        "percentComplete": 100,
    }
    assert envelope("r", 202, b"") == {"reqId": "r", "status": "in-progress"}
    assert envelope("r", 500, b"boom") == {
        "reqId": "r",
        "status": "errored",
        "response": "boom",
        "errorCode": 500,
    }


def test_the_live_status_counts_instances() -> None:
    version = {
        "status": "DEPLOYING",
        "activeInstances": [
            {"instanceStatus": "STARTING"},
            {"instanceStatus": "STARTING"},
            {"instanceStatus": "RUNNING"},
        ],
    }
    assert status_line(version) == "DEPLOYING (instances: 1 RUNNING, 2 STARTING)"
    assert status_line({"status": "ACTIVE"}) == "ACTIVE"


def test_gpu_rows_flatten_cluster_groups() -> None:
    groups = [
        {
            "name": "local",
            "clusters": [{"name": "c1"}],
            "gpus": [{"name": "L40S", "instanceTypes": [{"name": "LOCAL.GPU.L40S_1x", "default": True}]}],
        }
    ]
    assert gpu_rows(groups) == [
        {
            "gpu": "L40S",
            "instanceType": "LOCAL.GPU.L40S_1x",
            "default": True,
            "clusterGroup": "local",
            "clusters": ["c1"],
        }
    ]


def test_cells_read_well() -> None:
    assert [text(None), text(""), text(True), text(["a", "b"]), text({"k": 1}), text(3)] == [
        "-",
        "-",
        "yes",
        "a, b",
        '{"k":1}',
        "3",
    ]
    assert json.loads(text({"k": [1]})) == {"k": [1]}


def registration(**flags: object) -> dict:
    from fnplane.cli.functions import function_fields

    defaults: dict = {
        "input_file": None, "name": None, "inference_url": None, "container_image": None,
        "container_args": None, "env": [], "inference_port": None, "health_uri": None, "grpc": False,
        "description": None, "function_type": None, "tags": [],
    }  # fmt: skip
    return function_fields(**{**defaults, **flags})


def test_function_flags_become_the_registration_body(tmp_path) -> None:
    assert registration(
        name="n", inference_url="/x", env=["A=1", "B=x=y"], inference_port=8000, tags=["t"]
    ) == {
        "name": "n",
        "inferenceUrl": "/x",
        "containerEnvironment": [{"key": "A", "value": "1"}, {"key": "B", "value": "x=y"}],
        "inferencePort": 8000,
        "tags": ["t"],
    }
    # --grpc: the inference URL is /grpc (the platform then checks health by grpc.health.v1)
    assert registration(name="g", grpc=True)["inferenceUrl"] == "/grpc"
    with pytest.raises(typer.BadParameter):
        registration(name="g", grpc=True, inference_url="/other")
    # --input-file: a JSON body, the flags override its fields
    body = tmp_path / "fn.json"
    body.write_text('{"name": "from-file", "inferenceUrl": "/f", "health": {"protocol": "HTTP"}}')
    assert registration(input_file=body, name="flag") == {
        "name": "flag",
        "inferenceUrl": "/f",
        "health": {"protocol": "HTTP"},
    }


def test_health_flags_make_a_health_object_with_the_apis_defaults(tmp_path) -> None:
    from fnplane.cli.functions import HealthFlags

    # --health-uri alone stays the deprecated healthUri, as before
    assert registration(name="n", inference_url="/x", health_uri="/ok", health=HealthFlags("/ok")) == {
        "name": "n", "inferenceUrl": "/x", "healthUri": "/ok",
    }  # fmt: skip
    # a separate health port (Triton-style): the rest from the API's defaults
    assert registration(
        name="n", inference_url="/x", inference_port=9000, health=HealthFlags(port=9001)
    )["health"] == {
        "protocol": "HTTP", "uri": "/v2/health/ready", "port": 9001,
        "timeout": "PT10S", "expectedStatusCode": 200,
    }  # fmt: skip
    # every flag, beside --grpc and --health-uri; the port defaults to the inference port
    assert registration(
        name="g", grpc=True, health_uri="/h", health=HealthFlags("/h", None, "gRPC", "PT30S", 204)
    ) == {
        "name": "g",
        "inferenceUrl": "/grpc",
        "health": {
            "protocol": "gRPC",
            "uri": "/h",
            "port": 8000,
            "timeout": "PT30S",
            "expectedStatusCode": 204,
        },
    }
    # the input file's health object, with the flags over it
    body = tmp_path / "fn.json"
    body.write_text('{"name": "f", "inferenceUrl": "/f", "health": {"uri": "/file", "timeout": "PT5S"}}')
    assert registration(input_file=body, health=HealthFlags(port=7000))["health"] == {
        "protocol": "HTTP", "uri": "/file", "port": 7000, "timeout": "PT5S", "expectedStatusCode": 200,
    }  # fmt: skip


@pytest.mark.parametrize(
    "flags",
    [{"inference_url": "/x"}, {"name": "n"}, {"name": "n", "inference_url": "/x", "env": ["NOVALUE"]}],
)
def test_incomplete_registrations_are_usage_errors(flags: dict) -> None:
    with pytest.raises(typer.BadParameter):
        registration(**flags)


def test_errors_read_title_status_and_detail() -> None:
    from fnplane.cli.session import describe
    from fnplane.shared.errors import NotFoundError

    error = NotFoundError("Function 'x' not found")
    assert describe(error) == "NotFound: Function 'x' not found"  # no HTTP details: the class
    error.status = 404  # type: ignore[attr-defined]
    assert describe(error) == "Not Found (404): Function 'x' not found"  # the status's phrase
    error.problem = {"title": "Not Found", "detail": "ignored"}  # type: ignore[attr-defined]
    error.title = "Gone Fishing"  # type: ignore[attr-defined]
    assert describe(error) == "Gone Fishing (404): Function 'x' not found"  # the error's own title wins
