"""A real registry for the container tests: Debian's `docker-registry` (CNCF distribution 2.8) on a free
port of 127.0.0.1, with htpasswd (bcrypt) authentication, its configuration and storage in a temporary
directory, and an image pushed to it with that login through the tests' Podman (tests/podman.py).

    def test_pull(container_registry: ContainerRegistry, podman_service: PodmanService) -> None:
        container_registry.image         # 127.0.0.1:<port>/fnplane-echo:test, absent from podman's store
        container_registry.secret_value  # base64 of user:password (a registry credential's secret.value)
        container_registry.gate.hold_after(1 << 20)   # what the registry sends beyond 1 MiB waits ...
        container_registry.gate.release()              # ... until this
        container_registry.forget_local()  # removed from podman's store again (a test that pulled it)

The image is the echo test image with one more layer of random bytes: the echo image's own layers are in
podman's store (shared with `localhost/fnplane-echo:test`, which other tests run) and are reused by a pull,
so this layer is what a pull really downloads. Everyone reaches the registry through a gate, a TCP proxy
in a thread of the test process, so that a test can hold a pull half-way and look at it.

Started once per test module (the push of the echo image's layers is the slow part, a few seconds); the
registry is stopped by its PID, and its storage and the image are removed at the end. The tests' Podman
trusts plain HTTP on 127.0.0.1 through tests/podman-registries.conf.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from podman import PodmanService

USERNAME = "fnplane-test"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# the layer a pull downloads (random bytes do not compress)
LAYER_BYTES = 8 * 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gate:
    """A TCP proxy to the registry (threads of the test process) that can hold what the registry sends:
    `hold_after(n)` lets `n` more bytes through, then holds the rest until `release()`; `held` is set once
    something waits."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = int(self._server.getsockname()[1])
        self.held = threading.Event()
        self._open = threading.Event()
        self._open.set()
        self._budget: int | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, name="registry-gate", daemon=True)

    def start(self) -> None:
        self._acceptor.start()

    def hold_after(self, n_bytes: int) -> None:
        with self._lock:
            self._budget = n_bytes
            self.held.clear()
            self._open.clear()

    def release(self) -> None:
        with self._lock:
            self._budget = None
            self._open.set()

    def close(self) -> None:
        self._closed.set()
        self.release()
        if self._acceptor.is_alive():
            self._acceptor.join(5)
        self._server.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst, downstream in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(src, dst, downstream), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if downstream:
                    self._through(len(data))
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)

    def _through(self, n_bytes: int) -> None:
        with self._lock:
            if self._budget is None:
                return
            self._budget -= n_bytes
            hold = self._budget < 0
        if hold:
            self.held.set()
            self._open.wait()


@dataclass
class ContainerRegistry:
    directory: Path
    process: subprocess.Popen[bytes]
    gate: Gate
    password: str
    podman_service: PodmanService

    @property
    def host(self) -> str:
        """The registry's host as image references and registry credentials name it."""
        return f"127.0.0.1:{self.gate.port}"

    @property
    def image(self) -> str:
        return f"{self.host}/fnplane-echo:test"

    @property
    def username(self) -> str:
        return USERNAME

    @property
    def secret_value(self) -> str:
        """A registry credential's `secret.value`: base64 of `username:password`."""
        return base64.b64encode(f"{USERNAME}:{self.password}".encode()).decode()

    def log_tail(self, max_chars: int = 2000) -> str:
        return (self.directory / "registry.log").read_text(errors="replace")[-max_chars:]

    def local_images(self) -> list[str]:
        """The references of this registry's image in podman's store (none after `forget_local`)."""
        found = self.podman_service.podman("images", "--format", "{{.Repository}}:{{.Tag}}", check=False)
        return [line for line in found.stdout.split() if line == self.image]

    def forget_local(self) -> None:
        """Remove the image from podman's store, so that the next use pulls it."""
        self.podman_service.podman("rmi", self.image, check=False)
        assert self.local_images() == [], f"{self.image} is still in podman's store"


def _htpasswd(path: Path, password: str) -> None:
    # bcrypt is the only hash the registry accepts (apache2-utils, scripts/install-system-packages)
    line = subprocess.run(
        ["htpasswd", "-nbB", USERNAME, password], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    path.write_text(line + "\n")


def _config(directory: Path, port: int) -> Path:
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
        f"auth:\n  htpasswd:\n    realm: fnplane-test\n    path: {directory / 'htpasswd'}\n"
    )
    return config


def _answers(port: int) -> bool:
    try:
        # the API root asks for the login: the registry is up, with its authentication on
        return httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2.0).status_code == 401
    except httpx.TransportError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _push_image(registry: ContainerRegistry, base_image: str) -> None:
    context = registry.directory / "image"
    context.mkdir()
    (context / "layer.bin").write_bytes(os.urandom(LAYER_BYTES))
    (context / "Containerfile").write_text(
        f"FROM {base_image}\nCOPY layer.bin /opt/fnplane-registry-test/layer.bin\n"
    )
    podman = registry.podman_service.podman
    podman(
        "build", "--quiet", "--tag", registry.image, "--file", str(context / "Containerfile"), str(context)
    )
    shutil.rmtree(context)
    denied = podman("push", registry.image, check=False)
    assert denied.returncode != 0, "the registry took a push without a login"
    pushed = podman("push", "--creds", f"{USERNAME}:{registry.password}", registry.image, check=False)
    assert pushed.returncode == 0, f"push failed: {pushed.stderr}\n{registry.log_tail()}"
    registry.forget_local()


@pytest.fixture(scope="module")
def container_registry(
    podman_service: PodmanService, container_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContainerRegistry]:
    """A registry with htpasswd authentication and the echo image pushed to it, stopped at the end."""
    if shutil.which("docker-registry") is None or shutil.which("htpasswd") is None:
        # no skip: `make install-dev` installs both (scripts/install-system-packages)
        pytest.fail("docker-registry or htpasswd is missing: run `make install-dev`")
    directory = tmp_path_factory.mktemp("registry")
    password = secrets.token_urlsafe(16)
    _htpasswd(directory / "htpasswd", password)
    port = _free_port()
    with (directory / "registry.log").open("wb") as log:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(_config(directory, port))],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    gate = Gate(port)
    registry = ContainerRegistry(directory, process, gate, password, podman_service)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not answer on port {port}:\n{registry.log_tail()}")
            time.sleep(0.1)
        gate.start()
        _push_image(registry, container_images["echo"])
        yield registry
    finally:
        gate.release()
        try:
            podman_service.podman("rmi", registry.image, check=False)
        finally:
            gate.close()
            _stop(process)
            # the pushed layers (the echo image's, some 170 MB) do not wait for pytest's own clean-up
            shutil.rmtree(directory / "storage", ignore_errors=True)
