"""containerArgs -> argv and environment, as DESIGN.md section 3 binds them."""

from __future__ import annotations

import socket

import pytest
from compute_support import make_assignment

from fnplane.compute.backends.base import BackendError, separate_health_port
from fnplane.compute.backends.local import (
    build_argv,
    build_environment,
    expand_references,
    free_ports,
    instance_handle,
)
from fnplane.shared.models.compute import HealthCheck


def test_args_are_split_like_a_shell_and_not_run_through_one() -> None:
    argv = build_argv("python -c 'print(\"a b\")' ; echo $HOME", {})
    assert argv == ["python", "-c", 'print("a b")', ";", "echo", "$HOME"]


def test_references_are_expanded_per_word_like_kubernetes() -> None:
    env = {"PORT": "4321", "GREETING": "hello world"}
    assert build_argv("uvicorn app:app --port $(PORT) --msg=$(GREETING)", env) == [
        "uvicorn",
        "app:app",
        "--port",
        "4321",
        "--msg=hello world",
    ]
    assert expand_references("$(UNKNOWN) $$(PORT) $$", env) == "$(UNKNOWN) $(PORT) $"


def test_missing_or_broken_command_line_is_refused() -> None:
    with pytest.raises(BackendError):
        build_argv(None, {})
    with pytest.raises(BackendError, match="not a valid command line"):
        build_argv("python 'unterminated", {})


def test_environment_has_the_nvcf_variables_and_drops_platform_secrets() -> None:
    assignment = make_assignment("python x.py", containerEnvironment={"MODEL": "tiny", "PORT": "1"})
    env = build_environment(assignment, 5555, {"PATH": "/bin", "FNPLANE_AGENT_TOKEN": "secret"})
    assert env["PATH"] == "/bin"
    assert "FNPLANE_AGENT_TOKEN" not in env
    assert env["MODEL"] == "tiny"
    # the port the agent chose wins over anything the user set
    assert env["INFERENCE_PORT"] == env["PORT"] == "5555"
    assert env["NVCF_FUNCTION_ID"] == assignment.function_id
    assert env["NVCF_FUNCTION_VERSION_ID"] == assignment.version_id
    assert env["NVCF_FUNCTION_NAME"] == "echo"
    assert env["NVCF_NCA_ID"] == "nvcf-default"
    assert env["NVCF_INSTANCETYPE"] == "LOCAL.GPU.L40S_1x"
    assert env["NVCF_BACKEND"] == "local"
    assert env["NVCF_REGION"] == "local"
    # the rest of what NVCF's containers get (reference/containers.md 1.5)
    assert env["NVCF_INSTANCETYPE_VALUE"] == "LOCAL.GPU.L40S_1x"
    assert env["NVCF_ENV"] == "local"
    assert env["INSTANCE_ID"] == env["NVCF_INSTANCE_ID"] == assignment.instance_id


def _health(port: int) -> HealthCheck:
    return HealthCheck(
        protocol="HTTP", uri="/health-only", port=port, timeoutSeconds=2, expectedStatusCode=200
    )


def test_the_health_port_is_the_inference_port_unless_declared_otherwise() -> None:
    assert separate_health_port(make_assignment("x", inferencePort=8001, health=_health(8001))) is None
    assert separate_health_port(make_assignment("x", inferencePort=8001, health=_health(8000))) == 8000
    # no inferencePort: NVCF's default 8000, which is also the default health port
    assert separate_health_port(make_assignment("x", inferencePort=None, health=_health(8000))) is None
    assert separate_health_port(make_assignment("x", inferencePort=None, health=_health(9000))) == 9000


def test_a_function_with_a_health_port_of_its_own_gets_it_in_its_environment_and_args() -> None:
    assignment = make_assignment(
        "python fn.py --port $(PORT) --health-port $(HEALTH_PORT)", inferencePort=8001, health=_health(8000)
    )
    env = build_environment(assignment, 5555, {}, 6666)
    assert env["PORT"] == env["INFERENCE_PORT"] == "5555"
    assert env["HEALTH_PORT"] == env["INFERENCE_HEALTH_PORT"] == "6666"
    assert build_argv(assignment.container_args, env)[2:] == ["--port", "5555", "--health-port", "6666"]
    # sharing the inference port, HEALTH_PORT is that port
    shared = build_environment(make_assignment("x"), 5555, {})
    assert shared["HEALTH_PORT"] == shared["INFERENCE_HEALTH_PORT"] == shared["PORT"] == "5555"


def test_a_new_instance_gets_a_second_free_port_only_for_a_health_port_of_its_own() -> None:
    shared = instance_handle(make_assignment("x"))
    assert shared.health_port is None
    own = instance_handle(make_assignment("x", inferencePort=8001, health=_health(8000)))
    assert own.health_port is not None and own.health_port != own.port
    # both free: each can be bound right away
    for port in (own.port, own.health_port):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    assert len(set(free_ports(20))) == 20
