"""containerArgs -> argv and environment, as DESIGN.md section 3 binds them."""

from __future__ import annotations

import pytest
from compute_support import make_assignment

from fnplane.compute.backends.base import BackendError
from fnplane.compute.backends.local import build_argv, build_environment, expand_references


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
