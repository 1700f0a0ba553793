"""`fnplane up` as a child process for end-to-end tests, and the checks that nothing outlives it.

`UpProcess` runs `.venv/bin/fnplane up --home <tmp> --http-port <free>` in a session of its own (so
a test can always clean up by process group) and waits for `GET /health`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

FNPLANE = Path(sys.executable).parent / "fnplane"
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 40.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UpProcess:
    """One `fnplane up` child process and the files it writes."""

    def __init__(
        self, home: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = home.parent / f"{home.name}-{self.port}.out"
        self.stderr_path = home.parent / f"{home.name}-{self.port}.err"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("FNPLANE_")}
        # the tests' functions live in this repository, whatever the working directory: their sandbox
        # may read it (what an operator does with the setting for a model cache, say)
        environment["FNPLANE_AGENT_SANDBOX_READ_ONLY_PATHS"] = json.dumps([str(REPO)])
        # and some write marker files into the test's directory (DIR, inside it, stays hidden)
        environment["FNPLANE_AGENT_SANDBOX_SHARED_PATHS"] = json.dumps([str(home.parent)])
        environment.update(env or {})
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [str(FNPLANE), "up", "--home", str(home), "--http-port", str(self.port), *(args or [])],
                stdout=out,
                stderr=err,
                env=environment,
                cwd=home.parent,
                start_new_session=True,
            )
        self.pgid = self.process.pid

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_healthy(self) -> dict[str, object]:
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"fnplane up exited with {self.process.returncode}:\n{self.stderr}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=2.0)
                if response.status_code == 200:
                    return dict(response.json())
                last = response.text
            except httpx.TransportError as error:
                last = repr(error)
            time.sleep(0.1)
        pytest.fail(f"fnplane up not healthy within {START_TIMEOUT_S} s: {last}\n{self.stderr}")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"fnplane up did not stop within {STOP_TIMEOUT_S} s:\n{self.stderr}")

    def kill_leftovers(self) -> None:
        """Safety net for a failing test: nothing this test started survives it."""
        if self.process.poll() is None:
            for child in self.descendants():
                # a child may exit between the listing and the kill (its parent was just killed)
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            self.process.kill()
            self.process.wait(10)
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def assert_all_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=5)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"


INV_FUNCTION = Path(__file__).resolve().parents[2] / "examples" / "inv_function.py"


def deploy_inv_function(
    up: UpProcess,
    headers: dict[str, str],
    *,
    name: str,
    inference_url: str,
    max_concurrency: int = 1,
    min_instances: int = 1,
) -> dict:
    """examples/inv_function.py deployed (at most one instance), once ACTIVE: {"id", "versionId", ...}."""
    body = {
        "name": name,
        "inferenceUrl": inference_url,
        "inferencePort": 8000,
        "containerImage": "example/inv:1",
        "containerArgs": f"{sys.executable} {INV_FUNCTION} $(PORT)",
    }
    r = httpx.post(f"{up.url}/v2/nvcf/functions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    fn = r.json()["function"]
    spec = {
        "gpu": "L40S",
        "instanceType": "LOCAL.GPU.L40S_1x",
        "minInstances": min_instances,
        "maxInstances": 1,
        "maxRequestConcurrency": max_concurrency,
    }
    version_path = f"functions/{fn['id']}/versions/{fn['versionId']}"
    r = httpx.post(
        f"{up.url}/v2/nvcf/deployments/{version_path}",
        json={"deploymentSpecifications": [spec]},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(f"{up.url}/v2/nvcf/{version_path}", headers=headers)
        if r.json()["function"]["status"] == "ACTIVE":
            return dict(fn)
        time.sleep(0.2)
    raise AssertionError(f"never ACTIVE: {r.text}")


def function_processes(function_id: str) -> list[psutil.Process]:
    """The processes of a function's instances on this host, by the NVCF_FUNCTION_ID in their
    environment, without the sandbox's bwrap processes that carry it too: host pids a test can signal."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("NVCF_FUNCTION_ID") == function_id and process.name() != "bwrap":
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found
