"""The roles as processes for end-to-end tests (docs/deploy.md): `fnplane control`, `gateway`,
`grpc-proxy` and `agent` children, each in a session of its own, their NATS material from
`fnplane nats-creds`, and the calls the role tests make of them.

    role = RoleProcess("control-a", ["control", "--http-port", ...], tmp_path, env)
    role = RoleProcess("agent", [...], tmp_path, env, prefix=net.command("a1", []))  # on a netns host
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

BIN = Path(sys.executable).parent
FNPLANE = BIN / "fnplane"
STOP_TIMEOUT_S = 40.0


class RoleProcess:
    """One `fnplane <role> ...` child in a session of its own, its output in files beside it."""

    def __init__(
        self,
        name: str,
        args: list[str],
        directory: Path,
        env: dict[str, str],
        prefix: list[str] | None = None,
    ) -> None:
        self.name = name
        self.stdout_path = directory / f"{name}.out"
        self.stderr_path = directory / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*(prefix or []), str(FNPLANE), *args],
                stdout=out,
                stderr=err,
                env=env,
                cwd=directory,
                start_new_session=True,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the process and everything it started (its session)."""
        children = self.descendants()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.process.wait(10)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not stop within {STOP_TIMEOUT_S} s:\n{self.stderr}")


def nats_material(home: Path, what: str, out: Path, *extra: str) -> str:
    done = subprocess.run(
        [str(FNPLANE), "nats-creds", what, "--home", str(home), "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    return done.stdout


def shared_secret(path: Path, value: str) -> Path:
    """A secret every replica is given the same file of (mode 0600)."""
    path.write_text(value)
    path.chmod(0o600)
    return path


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, *roles: RoleProcess) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        for role in roles:
            if not role.alive():
                pytest.fail(f"{role.name} exited with {role.process.returncode}:\n{role.stderr}")
        try:
            last = check()
        except httpx.TransportError as error:
            last = repr(error)
        if last is True or (last and not isinstance(last, str)):
            return last
        time.sleep(0.1)
    logs = "\n".join(f"--- {role.name}\n{role.stderr[-3000:]}" for role in roles)
    pytest.fail(f"{what} not within {timeout_s} s (last: {last!r})\n{logs}")


def health(url: str) -> dict[str, Any] | str:
    response = httpx.get(f"{url}/health", timeout=2.0)
    return dict(response.json()) if response.status_code == 200 else response.text


def echo_function(client: httpx.Client, name: str, *, slow_s: float | None = None) -> tuple[str, str]:
    """examples/echo_server.py registered; with `slow_s`, examples/inv_function.py answering after it."""
    body = {
        "name": name,
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "containerImage": "local/echo",
        "containerArgs": f"{sys.executable} examples/echo_server.py",
    }
    if slow_s is not None:
        body.update(
            inferenceUrl=f"/slow?seconds={slow_s}",
            containerArgs=f"{sys.executable} examples/inv_function.py $(PORT)",
        )
    created = client.post("/v2/nvcf/functions", json=body)
    assert created.status_code == 200, created.text
    return created.json()["function"]["id"], created.json()["function"]["versionId"]


def deploy(client: httpx.Client, fid: str, vid: str) -> None:
    spec = {"gpu": "L40S", "instanceType": "LOCAL.GPU.L40S_1x", "minInstances": 1, "maxInstances": 1}
    deployed = client.post(
        f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}", json={"deploymentSpecifications": [spec]}
    )
    assert deployed.status_code == 200, deployed.text


def status_of(client: httpx.Client, fid: str, vid: str) -> str:
    return str(client.get(f"/v2/nvcf/functions/{fid}/versions/{vid}").json()["function"]["status"])
