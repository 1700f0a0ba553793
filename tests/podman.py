"""A real Podman for the container tests: `podman system service` on a private socket, speaking the Docker
Engine API, and the test images scripts/build-test-images builds here (no registry is reachable).

    async def test_echo(podman_service, container_images):
        async with aiodocker.Docker(url=podman_service.url) as client:
            await client.containers.run({"Image": container_images["echo"], "Labels": podman_service.labels})
        podman_service.engine().get("/containers/json")     # the Engine API from a synchronous test
        podman_service.podman("ps", "--all")         # the podman CLI, same service and configuration
        subprocess.run([...], env={**os.environ, **podman_service.env})   # DOCKER_HOST etc. for a child

Each pytest-xdist worker starts a service of its own (its own socket); they share podman's image and
container storage. A test removes the containers (and networks) it starts; whatever still carries
`podman_service.labels` when the session ends is removed then. Nothing is ever stopped by name: the
service by its PID, containers and networks by label.

The images are built while the tests are collected (`build_images_for`, from tests/conftest.py), not in a
test's setup, so that the first build (a debootstrap, minutes) is not cut short by the per-test timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
# the tests' registry (tests/registry.py) is plain HTTP on 127.0.0.1: insecure for this Podman only
REGISTRIES_CONF = ROOT / "tests" / "podman-registries.conf"
BUILD_SCRIPT = ROOT / "scripts" / "build-test-images"
IMAGES = {
    "python": "localhost/fnplane-python:bookworm",
    "echo": "localhost/fnplane-echo:test",
    "inv": "localhost/fnplane-inv:test",
    "crash": "localhost/fnplane-crash:test",
    "health-port": "localhost/fnplane-health-port:test",
    "network-probe": "localhost/fnplane-network-probe:test",
}
# the label that marks this session's containers, for the clean-up at the end
SESSION_LABEL = "org.fnplane.test-session"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# What build_images_for found: None (not built in this process), "" (built) or the failure to report.
_build_error: str | None = None


@dataclass
class PodmanService:
    socket: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    labels: dict[str, str] = field(default_factory=lambda: {SESSION_LABEL: uuid.uuid4().hex})

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """For a process environment: Docker-API clients and the podman CLI then use this service."""
        return {
            "CONTAINER_HOST": self.url,
            "DOCKER_HOST": self.url,
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
            "CONTAINERS_REGISTRIES_CONF": str(REGISTRIES_CONF),
            # an agent started with this environment labels its containers as this session's: whatever
            # a failed test leaves running is removed at the session's end
            "FNPLANE_AGENT_CONTAINER_LABELS": json.dumps(self.labels),
        }

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The podman CLI, through this service (--remote), with its configuration."""
        return subprocess.run(
            ["podman", "--remote", "--url", self.url, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def engine(self) -> httpx.Client:
        """A plain HTTP client on the service's Docker Engine API (for a synchronous test)."""
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://podman")

    def log_tail(self, max_chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-max_chars:]


def _podman_env() -> dict[str, str]:
    return {
        **os.environ,
        "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "CONTAINERS_REGISTRIES_CONF": str(REGISTRIES_CONF),
    }


def _require_podman() -> None:
    # no skip: the container tests must run wherever the suite runs (`make install-dev` installs podman)
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make install-dev` (scripts/install-system-packages)")


def _build_images() -> None:
    global _build_error
    result = subprocess.run([str(BUILD_SCRIPT)], env=_podman_env(), capture_output=True, text=True)
    _build_error = "" if result.returncode == 0 else f"scripts/build-test-images failed:\n{result.stderr}"


def build_images_for(items: list[pytest.Item]) -> None:
    """Build the test images once per process when a collected test needs them (pytest hook helper).

    Two xdist workers may both call this: the script holds a file lock, so the second waits for the first
    build and then finds the images current.
    """
    wanted = {"podman_service", "container_images"}
    if _build_error is None and shutil.which("podman") is not None:
        if any(wanted & set(getattr(item, "fixturenames", ())) for item in items):
            _build_images()


def _ensure_images() -> None:
    """The images, built now if the collection hook did not (a test run by other means)."""
    if _build_error is None:
        _build_images()
    if _build_error:
        pytest.fail(_build_error)


def _ping(socket: Path) -> bool:
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), timeout=2.0) as client:
            return client.get("http://podman/_ping").status_code == 200
    except httpx.TransportError:
        return False


def _start(directory: Path) -> PodmanService:
    socket = directory / "podman.sock"
    log_path = directory / "service.log"
    with log_path.open("wb") as log:
        # its own session, so a Ctrl-C meant for pytest does not reach it before the clean-up has run
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket}"],
            env=_podman_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = PodmanService(socket=socket, process=process, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _ping(socket):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(service)
            pytest.fail(f"podman system service did not answer /_ping:\n{service.log_tail()}")
        time.sleep(0.1)
    return service


def _remove_session_containers(service: PodmanService) -> None:
    """This session's containers, then their networks (the container backend's: one per instance)."""
    [(key, value)] = service.labels.items()
    # by id: `podman --remote rm --filter` (Podman 4.3) removes only the first container that matches
    found = service.podman("ps", "--all", "--quiet", "--filter", f"label={key}={value}", check=False)
    if ids := found.stdout.split():
        service.podman("rm", "--force", "--time", "0", *ids, check=False)
    service.podman("network", "prune", "--force", "--filter", f"label={key}={value}", check=False)


def _stop(service: PodmanService) -> None:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
        try:
            service.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()


@pytest.fixture(scope="session")
def podman_service() -> Iterator[PodmanService]:
    """A `podman system service` of this worker's own, the test images built, stopped at the end."""
    _require_podman()
    _ensure_images()
    # a short path: a unix socket's path is limited to 107 bytes
    directory = Path(tempfile.mkdtemp(prefix="fnplane-podman-"))
    service = _start(directory)
    try:
        yield service
    finally:
        try:
            _remove_session_containers(service)
        finally:
            _stop(service)
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def container_images(podman_service: PodmanService) -> dict[str, str]:
    """The test images by role: python (base), echo, inv (examples/inv_function.py), crash (exits 1)."""
    return dict(IMAGES)
