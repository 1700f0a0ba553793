"""docs/cli.md works when pasted: its shell blocks run, in order, as one script against `fnplane up`.

Only the address changes (a free port instead of 8080); FNPLANE_HOME points at the test's home and HOME
at the test's directory (so `fnplane login` writes there).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from up_process import UpProcess

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "cli.md"


def doc_script(port: int) -> str:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    assert blocks, "docs/cli.md has no examples"
    script = "set -euo pipefail\n" + "\n".join(blocks)
    assert "http://127.0.0.1:8080" in script
    return script.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")


@pytest.mark.timeout(240)
def test_every_example_of_the_cli_doc_works(tmp_path: Path, start_up: type[UpProcess]) -> None:
    home = tmp_path / "home"
    up = start_up(home, args=["--workdir", str(REPO)])
    up.wait_healthy()
    venv_bin = Path(sys.executable).parent
    result = subprocess.run(
        ["bash", "-c", doc_script(up.port)],
        cwd=REPO,
        env={
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FNPLANE_HOME": str(home),
        },
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{up.stderr[-3000:]}"
    out = result.stdout
    assert '{"hello": "cli"}' in out
    assert '{"from": "stdin"}' in out
    assert '"method": "PUT"' in out
    assert re.search(r'^\{"n": 2, "t": [0-9.]+\}$', out, re.M), out  # the third event's data line
    assert '"slept": 5' in out
    assert "exit code 1: it was cancelled" in out
    assert "exit code 1: that version is gone" in out
    assert "identical" in out
    assert out.rstrip().splitlines()[-1] == "INACTIVE"


def test_the_doc_shows_every_command() -> None:
    import typer.main

    from fnplane.cli.main import app

    def paths(command: object, prefix: str) -> list[str]:
        children = getattr(command, "commands", None)
        if not children:
            return [prefix]
        return [path for name, child in children.items() for path in paths(child, f"{prefix} {name}")]

    # the commands that run the platform (docs/deploy.md, README), not used against one
    platform = {"fnplane up", "fnplane agent", "fnplane grpc-proxy", "fnplane version", "fnplane control",
                "fnplane gateway", "fnplane nats-creds"}  # fmt: skip
    script = "\n".join(re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S))
    missing = [
        path
        for path in paths(typer.main.get_command(app), "fnplane")
        if path not in platform and path != "fnplane deploy create" and not re.search(rf"{path}\b", script)
    ]
    assert not missing, f"docs/cli.md has no example of {missing}"
