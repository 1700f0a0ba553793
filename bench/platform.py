"""A real `fnplane up` for the benchmark: its own home, ports and admin key; a function deployed on it,
and the same function server started once more on its own port as the direct-call baseline."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
FUNCTION = REPO / "examples" / "inv_function.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200")


class Platform:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="fnplane-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.key = "nvapi-" + secrets.token_urlsafe(32)
        self.proc: subprocess.Popen[bytes] | None = None
        self.direct_proc: subprocess.Popen[bytes] | None = None
        self.direct_url = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def start(self) -> None:
        env = dict(os.environ, FNPLANE_ADMIN_KEY=self.key)
        fnplane = str(Path(sys.executable).parent / "fnplane")
        self.proc = subprocess.Popen(
            [
                fnplane,
                "up",
                "--home",
                str(self.home),
                "--http-port",
                str(self.port),
                "--grpc-port",
                str(self.grpc_port),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.home / "up.log", "wb"),
        )
        wait_http(f"{self.url}/health")
        direct_port = free_port()
        self.direct_proc = subprocess.Popen([sys.executable, str(FUNCTION), str(direct_port)], cwd=REPO)
        self.direct_url = f"http://127.0.0.1:{direct_port}"
        wait_http(f"{self.direct_url}/v2/health/ready")

    def deploy(
        self, name: str, inference_url: str, concurrency: int, function: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Register and deploy a function (`function` overrides fields of the HTTP echo's registration)
        and wait until it is ACTIVE and, for an HTTP function, answers through the gateway."""
        body = {
            "name": name,
            "inferenceUrl": inference_url,
            "inferencePort": 8000,
            "containerImage": "example/inv:1",
            "containerArgs": f"{sys.executable} {FUNCTION} $(PORT)",
            **(function or {}),
        }
        r = httpx.post(f"{self.url}/v2/nvcf/functions", json=body, headers=self.auth, timeout=10)
        r.raise_for_status()
        fn = r.json()["function"]
        spec = {
            "gpu": "L40S",
            "instanceType": "LOCAL.GPU.L40S_1x",
            "minInstances": 1,
            "maxInstances": 1,
            "maxRequestConcurrency": concurrency,
        }
        r = httpx.post(
            f"{self.url}/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}",
            json={"deploymentSpecifications": [spec]},
            headers=self.auth,
            timeout=10,
        )
        r.raise_for_status()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            r = httpx.get(
                f"{self.url}/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}", headers=self.auth
            )
            if r.json()["function"]["status"] == "ACTIVE":
                break
            time.sleep(0.3)
        else:
            raise TimeoutError(f"{name} never became ACTIVE")
        if body.get("health", {}).get("protocol") == "gRPC":
            return fn  # no HTTP to answer; a gRPC session's first call waits for the worker itself
        # ACTIVE means an instance is healthy; wait until its worker answers through the gateway too
        host = f"{fn['id']}.invocation.127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = httpx.get(
                f"{self.url}/v2/health/ready",
                headers={**self.auth, "Host": host, "NVCF-POLL-SECONDS": "5"},
                timeout=10,
            )
            if r.status_code == 200:
                return fn
            time.sleep(0.3)
        raise TimeoutError(f"{name} does not answer through the gateway")

    def host(self, fn: dict[str, Any]) -> str:
        return f"{fn['id']}.invocation.127.0.0.1:{self.port}"

    def stop(self) -> None:
        for proc in (self.direct_proc, self.proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        # no leftovers: the run's home (database, NATS store, logs) goes with it
        shutil.rmtree(self.home, ignore_errors=True)
