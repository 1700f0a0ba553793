"""What `fnplane up --demo` registers and prints (up/demo.py): pure parts; tests/e2e/test_up_demo.py runs
the printed lines against a real platform."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fnplane.up.demo import ECHO_SCRIPT, DemoError, DemoFunction, demo_commands, registration

DEMO = DemoFunction("f" * 8, "v" * 8, reused=False)


def test_the_demo_registers_the_echo_example_of_the_working_directory(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="has none"):
        registration(tmp_path)
    (tmp_path / ECHO_SCRIPT).parent.mkdir(parents=True)
    (tmp_path / ECHO_SCRIPT).write_text("")
    body = registration(tmp_path)
    assert body["containerArgs"] == "python3 examples/echo_server.py"
    assert body["inferenceUrl"] == "/echo"


def test_the_export_line_survives_a_home_with_spaces_and_names_the_cli_when_off_the_path(
    tmp_path: Path,
) -> None:
    key_path = tmp_path / "my home" / "admin-key"
    key_path.parent.mkdir()
    key_path.write_text("nvapi-secret\n")
    cli_dir = tmp_path / "a venv" / "bin"
    text = demo_commands(DEMO, "http://127.0.0.1:8080", key_path, cli_dir)
    lines = [line.strip() for line in text.splitlines() if line.startswith("  export ")]
    script = "\n".join([*lines, 'printf "%s|%s|%s|%s" "$FNPLANE" "$KEY" "$FID" "${PATH%%:*}"'])
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout == f"http://127.0.0.1:8080|nvapi-secret|{DEMO.function_id}|{cli_dir}"


def test_no_path_line_when_the_cli_is_on_the_path() -> None:
    text = demo_commands(DEMO, "http://127.0.0.1:8080", Path("/h/admin-key"))
    assert "export PATH" not in text
    assert '  fnplane invoke $FID --data \'{"hello": "world"}\'' in text.splitlines()
