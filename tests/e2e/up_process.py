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
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Until something accepts connections on 127.0.0.1:`port` (a server the test started)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class UpProcess:
    """One `fnplane up` child process and the files it writes."""

    def __init__(
        self, home: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> None:
        self.home = home
        self._args = list(args or [])
        # with a certificate the one port speaks TLS (self-signed in tests: not verified)
        tls = "--tls-cert" in self._args
        self.verify = not tls
        self._scheme = "https" if tls else "http"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("FNPLANE_")}
        # the tests' functions live in this repository, whatever the working directory: their sandbox
        # may read it (what an operator does with the setting for a model cache, say)
        environment["FNPLANE_AGENT_SANDBOX_READ_ONLY_PATHS"] = json.dumps([str(REPO)])
        # and some write marker files into the test's directory (DIR, inside it, stays hidden)
        environment["FNPLANE_AGENT_SANDBOX_SHARED_PATHS"] = json.dumps([str(home.parent)])
        environment.update(env or {})
        self._environment = environment
        # ports the harness picked (not the test): another process may take one between free_port()
        # and the bind, so a start that lost that race is tried again on new ports
        self._own_ports = not {"--http-port", "--grpc-port"} & set(self._args)
        self._spawn()

    def _spawn(self) -> None:
        self.port = free_port()
        self.url = f"{self._scheme}://127.0.0.1:{self.port}"
        # the gRPC proxy's port (clients: `grpc.insecure_channel(up.grpc_target)`)
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        home = self.home
        self.stdout_path = home.parent / f"{home.name}-{self.port}.out"
        self.stderr_path = home.parent / f"{home.name}-{self.port}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [
                    str(FNPLANE),
                    "up",
                    "--home",
                    str(home),
                    "--http-port",
                    str(self.port),
                    "--grpc-port",
                    str(self.grpc_port),
                    *self._args,
                ],
                stdout=out,
                stderr=err,
                env=self._environment,
                cwd=home.parent,
                start_new_session=True,
            )
        self.pgid = self.process.pid

    def _lost_a_port_race(self) -> bool:
        return self._own_ports and any(
            sign in self.stderr
            for sign in ("address already in use", "Address already in use", "cannot listen")
        )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_healthy(self) -> dict[str, object]:
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        respawns = 3
        while time.monotonic() < deadline:
            if self.process.poll() is not None and self._lost_a_port_race() and respawns > 0:
                respawns -= 1
                self._spawn()
                continue
            if self.process.poll() is not None:
                pytest.fail(f"fnplane up exited with {self.process.returncode}:\n{self.stderr}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=2.0, verify=self.verify)
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


@contextlib.contextmanager
def running_up(home: Path, **kwargs: Any) -> Iterator[UpProcess]:
    """A healthy `fnplane up` for a module's tests: stopped after them, and whatever is left killed."""
    up = UpProcess(home, **kwargs)
    try:
        up.wait_healthy()
        yield up
        up.stop()
    finally:
        up.kill_leftovers()


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
    return deploy_function(up, headers, body, max_concurrency=max_concurrency, min_instances=min_instances)


def grpc_function_body(name: str, script: Path, env: dict[str, str] | None = None) -> dict:
    """A gRPC function (inferenceUrl /grpc, health by grpc.health.v1) run by this Python."""
    return {
        "name": name,
        "inferenceUrl": "/grpc",
        "inferencePort": 8001,
        "containerArgs": f"{sys.executable} {script}",
        "containerEnvironment": [{"key": k, "value": v} for k, v in (env or {}).items()],
        "health": {
            "protocol": "gRPC",
            "port": 8001,
            "uri": "/",
            "timeout": "PT10S",
            "expectedStatusCode": 200,
        },
    }


def deploy_function(
    up: UpProcess,
    headers: dict[str, str],
    body: dict,
    *,
    max_concurrency: int = 1,
    min_instances: int = 1,
) -> dict:
    """A function created from `body` and deployed (at most one instance), once ACTIVE."""
    r = httpx.post(f"{up.url}/v2/nvcf/functions", json=body, headers=headers, verify=up.verify)
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
        verify=up.verify,
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(f"{up.url}/v2/nvcf/{version_path}", headers=headers, verify=up.verify)
        if r.json()["function"]["status"] == "ACTIVE":
            return dict(fn)
        time.sleep(0.2)
    raise AssertionError(f"never ACTIVE: {r.text}")


def new_api_key(up: UpProcess, headers: dict[str, str], scopes: list[str]) -> tuple[str, str]:
    """(id, value) of a new API key of the caller's account with `scopes` on all its functions."""
    body = {
        "description": "test",
        "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "authorizations": {
            "policies": [
                {
                    "aud": "nvidia-cloud-functions-ncp-service-id-aketm",
                    "product": "nv-cloud-functions",
                    "resources": [{"id": "*", "type": "account-functions"}],
                    "scopes": scopes,
                }
            ]
        },
    }
    r = httpx.post(f"{up.url}/v1/keys", json=body, headers=headers, verify=up.verify)
    assert r.status_code == 200, r.text
    return str(r.json()["id"]), str(r.json()["value"])


def self_signed_certificate(directory: Path, name: str = "fnplane.test") -> tuple[Path, Path]:
    """A certificate for `name` (valid an hour) and its key, as PEM files in `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


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
