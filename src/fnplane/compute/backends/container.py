"""The container backend: each instance is a container of its `containerImage` (docs/backends.md).

It speaks the Docker Engine API through aiodocker (asyncio-native, on aiohttp), so it works with Docker
and with Podman's compatible service, and every call is an await on the agent's own loop: no threads. The
container is described in the Engine API's own JSON (`container_config`), so each `HostConfig` field is
spelled here and unit-tested. Two calls last as long as the container: the wait for its exit and the
stream of its output; each holds one connection of the backend's pool.

One instance is one container, as NVCF's pod holds the user's `inference` container:

* the image's own entrypoint, with `containerArgs` (split like a shell and `$(VAR)`-expanded, as the
  process backend does) as its arguments, replacing the image's CMD as Kubernetes `args` do;
* environment `containerEnvironment` plus the NVCF variables, `INFERENCE_PORT` and `PORT` = the port
  the function declared (`inferencePort`): inside the container it listens on its own port;
* a bridge network of its own (`container_networks.py`), isolated from every other container's, so no
  function reaches another's address or port; its way out stays (NAT through the host);
* that port published on 127.0.0.1 only, on the free host port the agent picked for the instance: the
  worker stays a local process outside the container, with its credentials, and calls the function
  there; nothing else of the platform is reachable from the container; a `health.port` other than the
  inference port (`HEALTH_PORT` inside) is published the same way on a second free host port, where the
  worker health-checks it;
* the instance's request directory bound read-write at the same path (the NVCF-ASSET-DIR and
  NVCF-LARGE-OUTPUT-DIR paths the worker sends are valid inside); no other host path;
* unprivileged: every capability dropped but NET_BIND_SERVICE (NVCF's inference container), no new
  privileges, the image's own user, an init process that forwards signals and reaps;
* CPU and memory limits of its instance type; when the agent's GPUs are real, the devices the agent
  chose for it (`compute/backends/gpus.py`), as an NVIDIA device request or CDI names;
* labels naming the platform, agent, function, version and instance, on the container and its
  network: after a restart the agent finds what an earlier run of it left (by its agent label) and
  removes it, as the process backend does.

Output goes through the agent into the same rotated log file per instance as a process's, so logs
survive restarts and removal of the container, and the agent keeps the tail a failure report carries.
The runtime's own copy, which the agent reads it from, is bounded like that file (`runtime_log_config`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

from fnplane.compute.backends.base import (
    SECRETS_FILE,
    BackendError,
    ExitStatus,
    InstanceBackend,
    InstanceHandle,
    Progress,
    declared_inference_port,
    request_root,
    secret_files,
    separate_health_port,
)
from fnplane.compute.backends.container_networks import (
    create_network,
    labelled_networks,
    network_config,
    network_name,
    remove_network,
)
from fnplane.compute.backends.gpus import GpuPool
from fnplane.compute.backends.image_pull import (
    PrivateImages,
    docker_login,
    pull_auth,
    pull_error,
    pull_reference,
    read_docker_config,
)
from fnplane.compute.backends.libpod import libpod_spec, needs_libpod, podman_version
from fnplane.compute.backends.local import function_environment, instance_handle, split_args
from fnplane.compute.backends.processes import ProcessTable, RotatingLog, follow_lines, tail_lines
from fnplane.compute.backends.pull_progress import PullProgress
from fnplane.shared.errors import UnavailableError
from fnplane.shared.loop import within
from fnplane.shared.models.compute import InstanceAssignment
from fnplane.shared.models.registry_credentials import image_registry

log = logging.getLogger(__name__)

ISOLATION_CONTAINER = "container"
# where a runtime listens when neither the setting nor DOCKER_HOST / CONTAINER_HOST names one
DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
# The newest Engine API version this module is written against (reference/containers.md 3.1): every field
# it sends exists since 1.41, Podman's compatible API advertises 1.41 (4.x) or 1.44, and Docker 29
# refuses clients below 1.44. A daemon that advertises less gets its own newest.
API_VERSION_MAX = "1.44"
# two connections per running instance last as long as its container (its wait and its output stream)
_MAX_CONNECTIONS = 512

LABEL_PLATFORM = "fnplane.platform"
LABEL_AGENT = "fnplane.agent"
LABEL_FUNCTION = "fnplane.function"
LABEL_VERSION = "fnplane.version"
LABEL_INSTANCE = "fnplane.instance"
PLATFORM = "fnplane"

# an instance id names its request directory and its container
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# the runtime's errors, the transport's when it cannot be reached, and a deadline that passed
_RUNTIME_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, TimeoutError)
_NOT_FOUND = 404
# the smallest runtime log a container gets (Podman refuses one below conmon's 8 KiB read buffer)
_RUNTIME_LOG_MIN_BYTES = 64 * 1024


class ContainerRuntimeError(UnavailableError):
    """No container runtime answers where the agent looks for one (the agent does not start)."""


# ---- what a container is created with: pure functions ------------------------------------------------


def runtime_url(
    configured: str, environ: Mapping[str, str], exists: Callable[[str], bool] = os.path.exists
) -> str:
    """The runtime's API address: the setting, DOCKER_HOST, CONTAINER_HOST, else a default socket."""
    for candidate in (configured, environ.get("DOCKER_HOST", ""), environ.get("CONTAINER_HOST", "")):
        if candidate:
            return candidate
    for socket_path in DEFAULT_SOCKETS:
        if exists(socket_path):
            return f"unix://{socket_path}"
    # none exists: the error then names the usual one
    return f"unix://{DEFAULT_SOCKETS[0]}"


def api_version(daemon: Mapping[str, Any]) -> str:
    """The Engine API version to pin (aiodocker's `v1.NN`), from the daemon's `GET /version`: its newest
    (`ApiVersion`) up to API_VERSION_MAX, and never below its oldest (`MinAPIVersion`)."""

    def parse(version: object) -> tuple[int, int]:
        major, minor = str(version).split(".")[:2]
        return int(major), int(minor)

    chosen = parse(API_VERSION_MAX)
    with contextlib.suppress(ValueError):
        chosen = min(chosen, parse(daemon.get("ApiVersion", API_VERSION_MAX)))
    with contextlib.suppress(ValueError):
        if daemon.get("MinAPIVersion"):
            chosen = max(chosen, parse(daemon["MinAPIVersion"]))
    return f"v{chosen[0]}.{chosen[1]}"


def container_name(instance_id: str) -> str:
    return f"fnplane-{instance_id}"


def container_labels(
    agent_id: str, assignment: InstanceAssignment, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The operator's own labels (`extra`), then the platform's, which always win."""
    return {
        **(extra or {}),
        LABEL_PLATFORM: PLATFORM,
        LABEL_AGENT: agent_id,
        LABEL_FUNCTION: assignment.function_id,
        LABEL_VERSION: assignment.version_id,
        LABEL_INSTANCE: assignment.instance_id,
    }


@dataclass(frozen=True)
class ContainerLimits:
    """CPU and memory limits per instance type name (0: none)."""

    cpus: Mapping[str, float] = field(default_factory=dict)
    cpus_default: float = 0.0
    memory_bytes: Mapping[str, int] = field(default_factory=dict)
    memory_default_bytes: int = 0

    def host_config(self, instance_type: str) -> dict[str, Any]:
        """The `HostConfig` fields that apply the limits of `instance_type`."""
        fields: dict[str, Any] = {}
        cpus = self.cpus.get(instance_type, self.cpus_default)
        if cpus > 0:
            fields["NanoCpus"] = int(cpus * 1e9)
        memory = self.memory_bytes.get(instance_type, self.memory_default_bytes)
        if memory > 0:
            # the same value as swap limit: no swap on top (NVCF's pods have none)
            fields["Memory"] = memory
            fields["MemorySwap"] = memory
        return fields


def runtime_log_config(max_bytes: int, files: int) -> dict[str, Any]:
    """`HostConfig.LogConfig`: the runtime's own copy of the container's output, which the agent reads
    back through the logs API, bounded like the agent's copy (`max_bytes` a file, `files` of them).

    `json-file` is Docker's file driver, rotated at max-size keeping max-file files; Podman takes the
    name for its `k8s-file` and honours max-size only (conmon truncates the file when it is reached).
    Named rather than left to the runtime's default, whose driver may know no max-size (journald)."""
    size = max(max_bytes, _RUNTIME_LOG_MIN_BYTES)
    return {"Type": "json-file", "Config": {"max-size": str(size), "max-file": str(max(files, 1))}}


def container_config(
    assignment: InstanceAssignment,
    *,
    agent_id: str,
    host_port: int,
    request_dir: Path,
    limits: ContainerLimits,
    network: str,
    log_max_bytes: int,
    log_files: int,
    labels: Mapping[str, str] | None = None,
    gpus: Mapping[str, Any] | None = None,
    health_host_port: int | None = None,
    secrets_file: Path | None = None,
) -> dict[str, Any]:
    """The body of `POST /containers/create` for one instance (Engine API JSON), the image apart;
    `network`: the instance's own network (`container_networks.py`); `log_max_bytes`, `log_files`: the
    bound of the runtime's copy of its output (`runtime_log_config`); `gpus`: the HostConfig fields that
    give it its GPUs (`GpuPool.host_config`); `health_host_port`: where a `health.port` other than the
    inference port is published (`separate_health_port`); `secrets_file`: the host file of the version's
    secrets, mounted read-only at SECRETS_FILE."""
    port = declared_inference_port(assignment)
    health_port = separate_health_port(assignment)
    env = function_environment(assignment, port, health_port)
    args = split_args(assignment.container_args, env)
    published = {port: host_port}
    if health_port is not None:
        if health_host_port is None:
            raise ValueError("a separate health port needs a host port to be published on")
        published[health_port] = health_host_port
    config: dict[str, Any] = {
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Labels": container_labels(agent_id, assignment, labels),
        "ExposedPorts": {f"{inner}/tcp": {} for inner in published},
        # one multiplexed stream of stdout and stderr, as the output reader expects
        "Tty": False,
        "HostConfig": {
            # a network of its own: no other container is reachable from it, nor it from them
            "NetworkMode": network,
            "PortBindings": {
                f"{inner}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(outer)}]
                for inner, outer in published.items()
            },
            # a mount rather than a `Binds` string: any path, and a missing source is an error
            "Mounts": [
                {"Type": "bind", "Source": str(request_dir), "Target": str(request_dir), "ReadOnly": False},
                *(
                    [{"Type": "bind", "Source": str(secrets_file), "Target": SECRETS_FILE, "ReadOnly": True}]
                    if secrets_file is not None
                    else []
                ),
            ],
            "CapDrop": ["ALL"],
            # what NVCF's inference container keeps: a function may declare a port below 1024
            "CapAdd": ["NET_BIND_SERVICE"],
            "SecurityOpt": ["no-new-privileges"],
            "Privileged": False,
            # PID 1 forwards the stop signal to the server and reaps its children
            "Init": True,
            "LogConfig": runtime_log_config(log_max_bytes, log_files),
            **limits.host_config(assignment.instance_type),
            **(gpus or {}),
        },
    }
    if args:
        # arguments replace the image's CMD and keep its ENTRYPOINT (Kubernetes `args`); none keep its CMD
        config["Cmd"] = args
    return config


def container_missing(error: aiodocker.DockerError) -> bool:
    """The container is gone: 404, or Podman's 500 "no such container" while its removal is under way."""
    return error.status == _NOT_FOUND or "no such container" in str(error.message or "").lower()


def runtime_message(error: BaseException) -> str:
    """The daemon's own words where it gave some (DockerError.message), else the error's."""
    if isinstance(error, aiodocker.DockerError):
        # 900: aiodocker's "cannot connect"; the transport's own error names the socket or host
        if error.status == 900 and isinstance(error.__context__, aiohttp.ClientError):
            return str(error.__context__)
        if error.message:
            return str(error.message)
    return str(error) or type(error).__name__


@dataclass(frozen=True)
class LabelledContainer:
    """A container of the runtime's list, as far as the clean-up needs it."""

    id: str
    name: str
    labels: Mapping[str, str]

    @classmethod
    def from_listing(cls, item: Mapping[str, Any]) -> LabelledContainer:
        """One entry of `GET /containers/json` (names carry a leading slash there)."""
        names = item.get("Names") or [""]
        return cls(
            id=str(item.get("Id", "")), name=str(names[0]).lstrip("/"), labels=item.get("Labels") or {}
        )


# ---- the backend -----------------------------------------------------------------------------------


@dataclass
class _Instance:
    handle: InstanceHandle
    log: RotatingLog
    container_id: str | None = None
    running: bool = False
    # the task that copies the current container's output into the log
    output: asyncio.Task[None] | None = None
    tail: deque[bytes] = field(default_factory=deque)
    tail_bytes: int = 0


class ContainerBackend(InstanceBackend):
    shares_request_dirs = True
    isolation = ISOLATION_CONTAINER

    def __init__(
        self,
        *,
        state_dir: Path,
        agent_id: str,
        stop_grace_s: float,
        host: str = "",
        api_timeout_s: float = 60.0,
        limits: ContainerLimits | None = None,
        gpus: GpuPool | None = None,
        labels: Mapping[str, str] | None = None,
        error_log_bytes: int = 1024,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_backups: int = 2,
    ) -> None:
        self.state_dir = state_dir
        self.private_images = PrivateImages(state_dir / "private-images.json")
        self.agent_id = agent_id
        self.stop_grace_s = stop_grace_s
        self.url = runtime_url(host, os.environ)
        self.api_timeout_s = api_timeout_s
        self.limits = limits or ContainerLimits()
        # the real GPUs the containers get (None: a fake pool, none is requested)
        self.gpus = gpus
        self.labels = dict(labels or {})
        self.error_log_bytes = error_log_bytes
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        # the workers beside the containers are processes of this agent, swept like the process backend's
        self.table = ProcessTable(state_dir / "processes.json", agent_id)
        self._client: aiodocker.Docker | None = None
        # ours when the runtime is a unix socket (a larger pool than aiodocker's 100): closed by us
        self._connector: aiohttp.BaseConnector | None = None
        self._instances: dict[str, _Instance] = {}
        # (major, minor) when the runtime is Podman (its compatible API's gaps: compute/backends/libpod.py)
        self.podman: tuple[int, int] | None = None

    # ---- the runtime --------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Reach the runtime (ContainerRuntimeError if none answers): at agent start, before cleanup."""
        if self._client is not None:
            return
        try:
            self._client = await self._open_client()
        except (*_RUNTIME_ERRORS, ValueError) as error:
            raise ContainerRuntimeError(
                f"no container runtime answers at {self.url} ({runtime_message(error)}); start Docker or "
                "`podman system service`, or set DOCKER_HOST / FNPLANE_AGENT_CONTAINER_HOST"
            ) from None

    def _timeout(self) -> aiohttp.ClientTimeout:
        # every call but the long ones (pull, logs, wait, stop, kill, remove: deadlines of their own here)
        return aiohttp.ClientTimeout(total=self.api_timeout_s, sock_connect=self.api_timeout_s)

    async def _open_client(self) -> aiodocker.Docker:
        # the ping: a runtime that answers says which API versions it speaks
        async with aiodocker.Docker(url=self.url, timeout=self._timeout()) as probe:
            daemon = await probe.version()
        version = api_version(daemon)
        self.podman = podman_version(daemon)
        url, connector = self.url, None
        if self.url.startswith("unix://"):
            connector = aiohttp.UnixConnector(path=self.url.removeprefix("unix://"), limit=_MAX_CONNECTIONS)
            url = "unix://localhost"  # aiodocker's placeholder host for a socket
        self._connector = connector
        log.info("container runtime at %s, Engine API %s", self.url, version)
        return aiodocker.Docker(url=url, connector=connector, timeout=self._timeout(), api_version=version)

    @property
    def client(self) -> aiodocker.Docker:
        if self._client is None:
            raise BackendError("the container backend is not connected to a runtime", cause="system-error")
        return self._client

    def _container(self, container_id: str) -> DockerContainer:
        return self.client.containers.container(container_id)

    # ---- start --------------------------------------------------------------------------------------

    def log_path(self, instance_id: str) -> Path:
        return self.state_dir / "logs" / f"{instance_id}.log"

    async def start(self, assignment: InstanceAssignment, progress: Progress | None = None) -> InstanceHandle:
        if not assignment.container_image:
            raise BackendError("the container backend needs containerImage (an image to run)")
        instance = self._instances.get(assignment.instance_id)
        if instance is None:
            handle = instance_handle(assignment)
            log_file = RotatingLog(
                self.log_path(assignment.instance_id), self.log_max_bytes, self.log_backups
            )
            instance = self._instances[assignment.instance_id] = _Instance(handle, log_file)
        elif instance.running:
            raise BackendError(f"instance {assignment.instance_id} is already running", cause="system-error")
        instance.tail.clear()
        instance.tail_bytes = 0
        await self._end_output(instance)
        try:
            root = await asyncio.to_thread(self._make_request_root, assignment.instance_id)
            gpus: dict[str, Any] = {}
            if self.gpus is not None:
                indices = self.gpus.take(assignment.instance_id, assignment.gpu, assignment.instance_type)
                gpus = self.gpus.host_config(indices)
            network = network_name(assignment.instance_id)
            secrets = await asyncio.to_thread(self._write_secrets, assignment)
            config = container_config(
                assignment,
                agent_id=self.agent_id,
                host_port=instance.handle.port,
                health_host_port=instance.handle.health_port,
                request_dir=root,
                limits=self.limits,
                network=network,
                log_max_bytes=self.log_max_bytes,
                log_files=self.log_backups + 1,
                labels=self.labels,
                gpus=gpus,
                secrets_file=secrets,
            )
            image = assignment.container_image
            await self._ensure_image(image, pull_auth(assignment), progress, account=assignment.nca_id)
            container_id = await self._create(
                image,
                container_name(assignment.instance_id),
                config,
                network_config(network, config["Labels"], podman=self.podman is not None),
            )
        except BackendError as error:
            self._note(instance, f"[fnplane] {error.detail}\n".encode())
            raise
        instance.container_id = container_id
        instance.running = True
        instance.handle.extra["container"] = container_id
        instance.output = asyncio.create_task(
            self._read_output(instance, container_id), name=f"container-output-{assignment.instance_id}"
        )
        return instance.handle

    @property
    def _secrets_dir(self) -> Path:
        # beside the request directories in the agent's 0700 state directory, never inside one
        return self.state_dir / "secrets"

    def _secrets_path(self, instance_id: str) -> Path:
        return self._secrets_dir / f"{instance_id}.json"

    def _write_secrets(self, assignment: InstanceAssignment) -> Path | None:
        """The version's secrets file for the container to mount (none: no secrets); readable by the
        image's user (0444) inside a directory only the agent enters (0700)."""
        files = secret_files(assignment)
        if not files:
            return None
        path = self._secrets_path(assignment.instance_id)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(files[SECRETS_FILE])
        temporary.chmod(0o444)
        temporary.replace(path)
        return path

    def _make_request_root(self, instance_id: str) -> Path:
        root = request_root(self.state_dir, instance_id)
        # one path component, and a valid container name once prefixed
        if not _SAFE_ID.fullmatch(instance_id):
            raise BackendError(f"instance id {instance_id!r} is not a path component", cause="system-error")
        root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        root.mkdir(mode=0o700, exist_ok=True)
        # whatever user the image runs as reaches its own root (the parent stays the agent's, 0700)
        root.chmod(0o777)
        return root

    async def _create(self, image: str, name: str, config: dict[str, Any], network: Mapping[str, Any]) -> str:
        """Remove a leftover of the same name (a previous run) and its network, create the network and
        the container, and start it; the container's id. A failure leaves neither behind."""
        with contextlib.suppress(*_RUNTIME_ERRORS):
            await self._remove(name)
        with contextlib.suppress(*_RUNTIME_ERRORS):
            await remove_network(self.client, network["Name"], self.api_timeout_s)
        try:
            await create_network(self.client, network, self.api_timeout_s)
        except _RUNTIME_ERRORS as error:
            raise BackendError(f"cannot create network {network['Name']}: {runtime_message(error)}") from None
        started = False
        try:
            container_id = await self._create_container(image, name, config)
            started = True
            return container_id
        finally:
            if not started:  # failed or cancelled: its network goes too (`stop` tries again)
                with contextlib.suppress(*_RUNTIME_ERRORS):
                    await remove_network(self.client, network["Name"], self.api_timeout_s)

    async def _create_container(self, image: str, name: str, config: dict[str, Any]) -> str:
        try:
            if needs_libpod(config, self.podman):
                container = await self._create_libpod(image, name, config)
            else:
                container = await self.client.containers.create({"Image": image, **config}, name=name)
        except (*_RUNTIME_ERRORS, ValueError) as error:  # ValueError: no libpod translation
            raise BackendError(f"cannot create a container of {image}: {runtime_message(error)}") from None
        try:
            await container.start()
        except _RUNTIME_ERRORS as error:
            with contextlib.suppress(*_RUNTIME_ERRORS):
                await self._remove(container.id)
            raise BackendError(f"cannot start a container of {image}: {runtime_message(error)}") from None
        return container.id

    async def _create_libpod(self, image: str, name: str, config: dict[str, Any]) -> DockerContainer:
        """Create through Podman's libpod API what its compatible API would create without its CDI
        devices (compute/backends/libpod.py)."""
        assert self.podman is not None
        major, minor = self.podman
        created = await self.client._query_json(
            f"v{major}.{minor}.0/libpod/containers/create",
            method="POST",
            data=libpod_spec(image, name, config),
            versioned_api=False,
        )
        return self._container(str(created["Id"]))

    async def _ensure_image(
        self,
        image: str,
        auth: Mapping[str, str] | None,
        report: Progress | None = None,
        *,
        account: str = "",
    ) -> None:
        """Pull when missing (`IfNotPresent`), or when another account pulled it with its registry
        credential (`PrivateImages`); a pull fails on an HTTP error or an error line. While it lasts,
        `report` hears its summary (`PullProgress`) each time that changes."""
        try:
            await self.client.images.inspect(image)
            if self.private_images.may_run(image, account):
                return
            log.info(
                "image %s was pulled with another account's credential: pulling it for %s", image, account
            )
        except aiodocker.DockerError as error:
            if error.status != _NOT_FOUND:
                raise BackendError(f"cannot inspect image {image}: {runtime_message(error)}") from None
        except _RUNTIME_ERRORS as error:
            raise BackendError(f"cannot inspect image {image}: {runtime_message(error)}") from None
        log.info("pulling image %s", image)
        with_account_credential = auth is not None
        if auth is None:
            config = await asyncio.to_thread(read_docker_config, os.environ)
            auth = docker_login(config, image_registry(image))
        failed: str | None = None
        pulled = PullProgress(image)
        said = pulled.summary()
        if report is not None:
            report(said)
        try:
            # aiodocker >= 0.27 raises DockerStreamError on an error line; older ones yield it
            progress = cast(
                AsyncGenerator[dict[str, Any], None],
                self.client.images.pull(pull_reference(image, auth), auth=auth, stream=True),
            )
            async with contextlib.aclosing(progress):
                while failed is None:
                    # a pull lasts as long as the image is large: the deadline is between two lines
                    async with asyncio.timeout(self.api_timeout_s):
                        line = await anext(progress, None)
                    if line is None:
                        break
                    failed = pull_error(line)
                    pulled.add(line)
                    if report is not None and pulled.summary() != said:
                        said = pulled.summary()
                        report(said)
        except _RUNTIME_ERRORS as error:
            failed = runtime_message(error)
        if failed is not None:
            raise BackendError(f"cannot pull image {image}: {failed}", cause="image-pull-issues")
        await asyncio.to_thread(
            self.private_images.pulled, image, account, with_account_credential=with_account_credential
        )

    async def _remove(self, name_or_id: str) -> None:
        async with asyncio.timeout(self.api_timeout_s):
            await self._container(name_or_id).delete(force=True, v=True)

    # ---- output -------------------------------------------------------------------------------------

    async def _read_output(self, instance: _Instance, container_id: str) -> None:
        """The container's stdout and stderr, from its start to its end (the stream ends with it)."""
        stream = cast(
            AsyncGenerator[str, None],
            self._container(container_id).log(stdout=True, stderr=True, follow=True),
        )
        try:
            async with contextlib.aclosing(stream):
                async for text in stream:
                    self._note(instance, text.encode())
        except _RUNTIME_ERRORS as error:
            self._note(instance, f"[fnplane] no more output: {runtime_message(error)}\n".encode())

    def _note(self, instance: _Instance, chunk: bytes) -> None:
        """One piece of output: to the log file (and its followers) and the tail of this run."""
        with contextlib.suppress(ValueError):  # the log was closed by a forget in the meantime
            instance.log.write(chunk)
        instance.tail.append(chunk)
        instance.tail_bytes += len(chunk)
        while instance.tail and instance.tail_bytes - len(instance.tail[0]) >= self.error_log_bytes:
            instance.tail_bytes -= len(instance.tail.popleft())

    async def _end_output(self, instance: _Instance, drain_s: float = 5.0) -> None:
        """The output of the previous container, which has ended: its last lines, then the reader gone."""
        output, instance.output = instance.output, None
        if output is None:
            return
        with contextlib.suppress(TimeoutError):
            await within(asyncio.shield(output), drain_s)
        if not output.done():
            output.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await output

    def stderr_tail(self, instance_id: str) -> str:
        """The last bytes of the current run's output (a container's streams are not told apart)."""
        instance = self._instances.get(instance_id)
        if instance is None:
            return ""
        return b"".join(instance.tail)[-self.error_log_bytes :].decode("utf-8", "replace")

    # ---- exit and stop ------------------------------------------------------------------------------

    async def wait(self, instance_id: str) -> ExitStatus:
        instance = self._instances[instance_id]
        container_id = instance.container_id
        if container_id is None or self._client is None:
            return ExitStatus(None, self.stderr_tail(instance_id))
        code: int | None
        try:
            # `POST /containers/{id}/wait`: no deadline, it lasts as long as the container
            result = await self._container(container_id).wait()
            code = int(result.get("StatusCode", -1))
        except aiodocker.DockerError as error:
            code = None
            if not container_missing(error):  # else removed under us (a stop with forget, or someone else)
                self._note(instance, f"[fnplane] lost the container: {runtime_message(error)}\n".encode())
        except _RUNTIME_ERRORS as error:
            code = None
            self._note(instance, f"[fnplane] lost the container: {runtime_message(error)}\n".encode())
        instance.running = False
        # the run's output must be complete before anyone reads its tail
        if instance.output is not None:
            with contextlib.suppress(TimeoutError):
                await within(asyncio.shield(instance.output), 2.0)
        return ExitStatus(code, self.stderr_tail(instance_id))

    def is_alive(self, instance_id: str) -> bool:
        instance = self._instances.get(instance_id)
        return bool(instance and instance.running)

    def port(self, instance_id: str) -> int | None:
        instance = self._instances.get(instance_id)
        return instance.handle.port if instance else None

    async def stop(self, instance_id: str, *, forget: bool = True) -> None:
        """`docker stop` (SIGTERM, SIGKILL after the grace period); removed when forgotten."""
        instance = self._instances.get(instance_id)
        # no container of its own to stop: a start that failed, or one cut short half-way
        unstarted = instance is None or instance.container_id is None
        if instance is not None and instance.container_id is not None:
            container_id = instance.container_id
            await self._stop_container(container_id, max(int(self.stop_grace_s + 0.999), 1))
            instance.running = False
            await self._end_output(instance)
            if forget:
                with contextlib.suppress(*_RUNTIME_ERRORS):
                    await self._remove(container_id)
                instance.container_id = None
        if forget:
            if self._client is not None:
                if unstarted:  # whatever such a start left under the instance's name
                    with contextlib.suppress(*_RUNTIME_ERRORS):
                        await self._remove(container_name(instance_id))
                # once its container is gone
                await self._remove_network(network_name(instance_id))
            await asyncio.to_thread(shutil.rmtree, request_root(self.state_dir, instance_id), True)
            await asyncio.to_thread(self._secrets_path(instance_id).unlink, True)
            if self.gpus is not None:
                self.gpus.give_back(instance_id)
        if forget and instance is not None:
            instance.log.close()
            del self._instances[instance_id]

    async def _remove_network(self, name: str) -> None:
        try:
            await remove_network(self.client, name, self.api_timeout_s)
        except _RUNTIME_ERRORS as error:
            log.warning("cannot remove network %s: %s", name, runtime_message(error))

    async def _stop_container(self, container_id: str, grace_s: int) -> None:
        """The runtime's stop (it kills after `grace_s` itself); a kill when the stop call fails."""
        container = self._container(container_id)
        try:
            # the runtime's call lasts the grace period: the deadline has to cover it
            async with asyncio.timeout(grace_s + self.api_timeout_s):
                await container.stop(t=grace_s)
            return
        except aiodocker.DockerError as error:
            if container_missing(error):
                return
            log.warning("cannot stop container %s: %s", container_id, runtime_message(error))
        except _RUNTIME_ERRORS as error:
            log.warning("cannot stop container %s: %s", container_id, runtime_message(error))
        with contextlib.suppress(*_RUNTIME_ERRORS):
            async with asyncio.timeout(self.api_timeout_s):
                await container.kill(signal="SIGKILL")

    # ---- logs ---------------------------------------------------------------------------------------

    def knows(self, instance_id: str) -> bool:
        return instance_id in self._instances or self.log_path(instance_id).exists()

    async def logs(self, instance_id: str, *, tail: int) -> list[str]:
        return await asyncio.to_thread(tail_lines, self.log_path(instance_id), self.log_backups, tail)

    async def follow(self, instance_id: str, *, tail: int) -> AsyncIterator[str]:
        instance = self._instances.get(instance_id)
        log_file = instance.log if instance is not None else None
        async for line in follow_lines(log_file, lambda: self.logs(instance_id, tail=tail)):
            yield line

    # ---- an earlier run, and the end ----------------------------------------------------------------

    async def labelled_containers(self) -> list[LabelledContainer]:
        """Every container of this agent, running or not (found by its agent label)."""
        filters = {"label": [f"{key}={value}" for key, value in self._agent_labels().items()]}
        listing = await self.client.containers.list(all=True, filters=filters)
        keys = ("Id", "Names", "Labels")
        return [
            LabelledContainer.from_listing({key: item[key] for key in keys if key in item})
            for item in listing
        ]

    async def cleanup(self) -> list[str]:
        await self.connect()
        self.table.lock()
        # the workers of an earlier run are processes; its functions are containers
        found = set(await self.table.sweep_earlier(self.stop_grace_s))
        try:
            containers = await self.labelled_containers()
        except _RUNTIME_ERRORS as error:
            raise ContainerRuntimeError(
                f"cannot list containers at {self.url}: {runtime_message(error)}"
            ) from None
        for container in containers:
            found.add(container.labels.get(LABEL_INSTANCE, container.name))
        await asyncio.gather(*(self._stop_and_remove(container.id) for container in containers))
        # their networks, once no container is on them (and any a start left when the agent died)
        try:
            networks = await self.labelled_networks()
        except _RUNTIME_ERRORS as error:
            raise ContainerRuntimeError(
                f"cannot list networks at {self.url}: {runtime_message(error)}"
            ) from None
        await asyncio.gather(*(self._remove_network(name) for name in networks))
        await asyncio.to_thread(shutil.rmtree, self.state_dir / "requests", True)
        await asyncio.to_thread(shutil.rmtree, self._secrets_dir, True)
        return sorted(found)

    def _agent_labels(self) -> dict[str, str]:
        return {LABEL_PLATFORM: PLATFORM, LABEL_AGENT: self.agent_id}

    async def labelled_networks(self) -> list[str]:
        """The names of every network of this agent (found by its agent label)."""
        return await labelled_networks(self.client, self._agent_labels())

    async def _stop_and_remove(self, container_id: str) -> None:
        await self._stop_container(container_id, max(int(self.stop_grace_s), 1))
        with contextlib.suppress(*_RUNTIME_ERRORS):
            await self._remove(container_id)

    async def aclose(self) -> None:
        try:
            await asyncio.gather(*(self.stop(iid) for iid in list(self._instances)), return_exceptions=True)
        finally:
            self.table.unlock()
            client, connector = self._client, self._connector
            self._client = self._connector = None
            if client is not None:
                await client.close()
            if connector is not None:
                await connector.close()
