"""`fnplane up --demo` (what `make run` starts): the echo example deployed, the commands to try it
printed, and those commands working when pasted; a second start on the same home reuses the function.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from up_process import REPO, UpProcess

from fnplane.up.demo import DEMO_NAME

DEMO_TIMEOUT_S = 90.0


def wait_for_demo(up: UpProcess) -> str:
    """The stdout of `up` once it has printed the demo's commands."""
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while time.monotonic() < deadline:
        if "Demo: " in up.stdout and "Host: $FID" in up.stdout:
            return up.stdout
        if up.process.poll() is not None:
            pytest.fail(f"fnplane up exited with {up.process.returncode}:\n{up.stderr}")
        time.sleep(0.2)
    pytest.fail(f"no demo commands within {DEMO_TIMEOUT_S} s:\n{up.stdout}\n{up.stderr}")


def printed(stdout: str, prefix: str) -> list[str]:
    """The printed command lines (indented) that start with `prefix`."""
    return [line.strip() for line in stdout.splitlines() if line.startswith("  " + prefix)]


def run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -eu\n" + script],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def demo_functions(up: UpProcess) -> list[dict]:
    key = (up.home / "admin-key").read_text().strip()
    r = httpx.get(f"{up.url}/v2/nvcf/functions", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return [f for f in r.json()["functions"] if f["name"] == DEMO_NAME]


def test_up_demo_deploys_echo_prints_working_commands_and_reuses_it(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    home = tmp_path / "home"
    up = start_up(home, args=["--workdir", str(REPO), "--demo"])
    up.wait_healthy()
    out = wait_for_demo(up)

    (export,) = printed(out, "export FNPLANE=")
    fid = re.search(r"FID=(\S+)", export)[1]  # type: ignore[index]
    assert f"FNPLANE={up.url} " in export and str(home / "admin-key") in export
    cli = printed(out, "fnplane ")
    assert [line.split(" --")[0].split(" $")[0] for line in cli] == [
        "fnplane login",
        "fnplane function list",
        "fnplane invoke",
        "fnplane invoke",
        "fnplane deploy status",
    ]
    assert any("--direct /any/path --method POST" in line for line in cli)
    curls = printed(out, "curl ")
    assert len(curls) == 2 and any('-H "Host: $FID.invocation.localhost"' in c for c in curls)

    # the curl lines work as printed (each on its own line, so the outputs can be told apart)
    result = run("\n".join([export, *(f"{c}; echo" for c in curls)]), tmp_path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    answers = [json.loads(line) for line in result.stdout.splitlines() if line]
    assert answers == [
        {"echo": {"hello": "world"}, "path": "/echo"},
        {"echo": {"hello": "direct"}, "path": "/any/path"},
    ]
    (function,) = demo_functions(up)
    assert function["id"] == fid and function["status"] == "ACTIVE"
    assert function["containerArgs"] == "python3 examples/echo_server.py"
    assert up.stop() == 0

    # a second --demo start on the same home registers nothing: it reuses the function
    again = start_up(home, args=["--workdir", str(REPO), "--demo"])
    again.wait_healthy()
    out = wait_for_demo(again)
    assert "reused from an earlier --demo start" in out
    (export,) = printed(out, "export FNPLANE=")
    assert f"FID={fid} " in export
    (function,) = demo_functions(again)
    assert function["id"] == fid and function["status"] == "ACTIVE"
    result = run("\n".join([export, printed(out, "curl ")[1]]), tmp_path)
    assert json.loads(result.stdout) == {"echo": {"hello": "direct"}, "path": "/any/path"}, result.stderr


def test_up_demo_outside_the_repository_says_why_and_keeps_running(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    up = start_up(tmp_path / "home", args=["--workdir", str(empty), "--demo"])
    up.wait_healthy()
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while "examples/echo_server.py" not in up.stderr and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"{empty} has none" in up.stderr
    assert "Demo: " not in up.stdout
    assert demo_functions(up) == []
    assert httpx.get(f"{up.url}/health").status_code == 200


def test_the_printed_cli_lines_work(tmp_path: Path, start_up: type[UpProcess]) -> None:
    up = start_up(tmp_path / "home", args=["--workdir", str(REPO), "--demo"])
    up.wait_healthy()
    out = wait_for_demo(up)
    (export,) = printed(out, "export FNPLANE=")
    # the printed PATH line, if `fnplane up` did not find its own CLI on the PATH, else ours
    path = printed(out, "export PATH=") or [f"export PATH={Path(sys.executable).parent}:$PATH"]
    lines = [*path, export, *(f"{c}; echo" for c in printed(out, "fnplane "))]
    result = run("\n".join(lines), tmp_path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert '{"echo": {"hello": "world"}, "path": "/echo"}' in lines, result.stdout
    assert '{"echo": {"hello": "direct"}, "path": "/any/path"}' in lines, result.stdout
    assert DEMO_NAME in result.stdout and "ACTIVE" in result.stdout
