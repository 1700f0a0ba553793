"""The container backend against a real Podman (tests/podman.py): the backend alone, then a real agent.

The images are built locally by scripts/build-test-images (no registry is reachable here).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import pytest
from compute_stack import Platform, create_function, deploy, wait_for, wait_status

from assignments import make_assignment
from container_registry import ContainerRegistry
from fnplane.compute.backends.base import BackendError, request_root
from fnplane.compute.backends.container import ContainerBackend, ContainerLimits, container_missing
from fnplane.shared.models.compute import InstanceAssignment, RegistryAuth
from podman import PodmanService

MiB = 1024 * 1024


def _assignment(image: str, container_args: str | None = None, **overrides: Any) -> InstanceAssignment:
    return make_assignment(container_args, containerImage=image, **overrides)


def _backend(state_dir: Path, service: PodmanService, agent_id: str, **options: Any) -> ContainerBackend:
    return ContainerBackend(
        state_dir=state_dir,
        agent_id=agent_id,
        stop_grace_s=2.0,
        host=service.url,
        limits=ContainerLimits(
            cpus={"LOCAL.GPU.L40S_1x": 1.5}, memory_bytes={"LOCAL.GPU.L40S_1x": 256 * MiB}
        ),
        **options,
    )


@pytest.fixture
async def client(podman_service: PodmanService) -> AsyncIterator[aiodocker.Docker]:
    async with aiodocker.Docker(url=podman_service.url) as docker:
        yield docker


@pytest.fixture
async def backend(tmp_path: Path, podman_service: PodmanService) -> AsyncIterator[ContainerBackend]:
    running = _backend(tmp_path / "state", podman_service, f"test-{uuid.uuid4().hex[:8]}")
    await running.connect()
    assert await running.cleanup() == []
    try:
        yield running
    finally:
        await running.aclose()
        # nothing of this agent is left, whatever the test did
        leftover = _backend(tmp_path / "state", podman_service, running.agent_id)
        await leftover.cleanup()
        await leftover.aclose()


def _size(path: Path) -> int:
    """A file's size, or the sum of a directory's files."""
    return sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size


async def _networks_of(client: aiodocker.Docker, name: str) -> dict[str, Any]:
    """The networks a container is on, by name, with its address on each."""
    info = await _inspect(client, name)
    assert info is not None, name
    return dict(info["NetworkSettings"]["Networks"])


async def _network_names(client: aiodocker.Docker, agent_id: str) -> list[str]:
    listing = await client.networks.list(filters={"label": [f"fnplane.agent={agent_id}"]})
    return sorted(item["Name"] for item in listing)


async def _healthy(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            return (await http.get(f"http://127.0.0.1:{port}/v2/health/ready")).status_code == 200
    except httpx.HTTPError:
        return False


async def _inspect(client: aiodocker.Docker, name: str) -> dict[str, Any] | None:
    try:
        return dict(await client.containers.container(name).show())
    except aiodocker.DockerError as error:
        if container_missing(error):
            return None
        raise


async def test_an_instance_serves_from_its_container_and_stop_removes_it(
    backend: ContainerBackend, client: aiodocker.Docker, container_images: dict[str, str]
) -> None:
    assignment = _assignment(container_images["echo"], containerEnvironment={"GREETING": "hi"})
    handle = await backend.start(assignment)
    await wait_for(lambda: _healthy(handle.port), timeout_s=30)
    async with httpx.AsyncClient(timeout=5.0) as http:
        echoed = await http.post(f"http://127.0.0.1:{handle.port}/echo", json={"x": 1})
    assert echoed.status_code == 200 and echoed.json()["echo"] == {"x": 1}
    assert backend.is_alive(assignment.instance_id)

    name = f"fnplane-{assignment.instance_id}"
    info = await _inspect(client, name)
    assert info is not None
    labels = info["Config"]["Labels"]
    assert labels["fnplane.platform"] == "fnplane"
    assert labels["fnplane.agent"] == backend.agent_id
    assert labels["fnplane.function"] == assignment.function_id
    assert labels["fnplane.version"] == assignment.version_id
    assert labels["fnplane.instance"] == assignment.instance_id
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    assert env["PORT"] == env["INFERENCE_PORT"] == "8000"
    assert env["GREETING"] == "hi" and env["NVCF_FUNCTION_ID"] == assignment.function_id
    host = info["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == 256 * MiB
    assert host["Privileged"] is False
    assert "no-new-privileges" in " ".join(host["SecurityOpt"] or [])
    # every capability dropped (Podman lists them one by one, Docker keeps "ALL")
    cap_drop = {cap.upper().removeprefix("CAP_") for cap in host["CapDrop"] or []}
    assert "ALL" in cap_drop or {"CHOWN", "DAC_OVERRIDE", "SETUID", "KILL"} <= cap_drop
    [binding] = host["PortBindings"]["8000/tcp"]
    assert binding["HostIp"] == "127.0.0.1" and binding["HostPort"] == str(handle.port)
    root = request_root(backend.state_dir, assignment.instance_id)
    binds = [(m["Source"], m["Destination"]) for m in info["Mounts"] if m["Type"] == "bind"]
    assert binds == [(str(root), str(root))]

    async def logged() -> bool:
        lines = await backend.logs(assignment.instance_id, tail=20)
        return any("echo: listening on 0.0.0.0:8000" in line for line in lines)

    # the container's output arrives through the runtime's log stream, a moment after it is written
    await wait_for(logged, timeout_s=30)  # the runtime streams output a moment after it is written

    await backend.stop(assignment.instance_id)
    assert await _inspect(client, name) is None
    assert not root.exists()
    assert not backend.is_alive(assignment.instance_id)
    # the logs outlive the container (the instance logs endpoint after an undeploy)
    assert backend.knows(assignment.instance_id)


async def test_the_function_sees_its_request_dir_and_nothing_of_the_agents(
    backend: ContainerBackend, tmp_path: Path, container_images: dict[str, str]
) -> None:
    secret = backend.state_dir / "agent-secret"
    secret.write_text("not for functions")
    # beside the state directory: the mount's parents exist inside, empty, and nothing else of theirs
    host_file = tmp_path / "host-file"
    host_file.write_text("host")
    assignment = _assignment(container_images["python"])
    root = request_root(backend.state_dir, assignment.instance_id)
    program = (
        "import os, sys; open(os.path.join(sys.argv[2], 'out'), 'w').write('written'); "
        "print('sees', os.path.exists(sys.argv[1]), os.path.exists(sys.argv[3]))"
    )
    args = f'python3 -c "{program}" {secret} {root} {host_file}'
    await backend.start(assignment.model_copy(update={"container_args": args}))
    status = await asyncio.wait_for(backend.wait(assignment.instance_id), 30)
    assert status.code == 0, status.stderr_tail
    # neither the agent's state nor anything else of the host's tree; its request dir, read-write
    assert "sees False False" in status.stderr_tail
    assert (root / "out").read_text() == "written"


async def test_the_secrets_file_is_mounted_read_only_and_goes_with_the_instance(
    backend: ContainerBackend, container_images: dict[str, str]
) -> None:
    secrets = {"API_KEY": "k-" + uuid.uuid4().hex, "site.example.com": {"region": "us-west-2"}}
    assignment = _assignment(container_images["python"], secrets=secrets)
    program = (
        "import json, os; p = '/var/secrets/secrets.json'; "
        "print('secrets', json.dumps(json.load(open(p))), 'writable', os.access(p, os.W_OK))"
    )
    await backend.start(assignment.model_copy(update={"container_args": f'python3 -c "{program}"'}))
    status = await asyncio.wait_for(backend.wait(assignment.instance_id), 30)
    assert status.code == 0, status.stderr_tail
    [line] = [line for line in status.stderr_tail.splitlines() if line.startswith("secrets ")]
    shown, writable = line.removeprefix("secrets ").rsplit(" writable ", 1)
    assert json.loads(shown) == secrets and writable == "False"
    await backend.stop(assignment.instance_id)
    assert not list((backend.state_dir / "secrets").glob("*")), "the host file goes with the instance"


async def test_an_image_pulled_with_one_accounts_credential_is_not_another_accounts(
    backend: ContainerBackend,
    container_registry: ContainerRegistry,
    podman_service: PodmanService,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The runtime's store is shared: a private image one account pulled with its credential is pulled
    again for another account (and refused without a credential of its own), never run from the cache."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))  # no login stands in
    container_registry.forget_local()
    image = container_registry.image
    login = RegistryAuth(
        username=container_registry.username,
        password=container_registry.password,
        serveraddress=container_registry.host,
    )
    owner = _assignment(image, "python3 /app/echo_server.py", ncaId="owner", registryAuth=login)
    await backend.start(owner)
    assert container_registry.local_images() == [image]
    await backend.stop(owner.instance_id)
    stranger = _assignment(image, "python3 /app/echo_server.py", ncaId="stranger")
    with pytest.raises(BackendError) as refused:
        await backend.start(stranger)
    assert refused.value.cause == "image-pull-issues"
    assert "unauthorized" in refused.value.detail or "authentication required" in refused.value.detail
    await backend.stop(stranger.instance_id)
    # the owner runs it from the store, and so does an account whose own pull with a credential worked
    again = _assignment(image, "python3 /app/echo_server.py", ncaId="owner")
    await backend.start(again)
    await backend.stop(again.instance_id)
    # and a new agent run keeps knowing whose it is
    assert not _backend(backend.state_dir, podman_service, "x").private_images.may_run(image, "stranger")
    container_registry.forget_local()


async def test_a_crashing_image_exits_1_with_its_log_tail_and_restarts(
    backend: ContainerBackend, client: aiodocker.Docker, container_images: dict[str, str]
) -> None:
    assignment = _assignment(container_images["crash"])
    await backend.start(assignment)
    status = await asyncio.wait_for(backend.wait(assignment.instance_id), 30)
    assert status.code == 1
    assert "crash: loading model" in status.stderr_tail
    assert "crash: FATAL: no model here" in status.stderr_tail
    # a restart replaces the exited container, under the same name and host port
    port = backend.port(assignment.instance_id)
    handle = await backend.start(assignment)
    assert handle.port == port
    again = await asyncio.wait_for(backend.wait(assignment.instance_id), 30)
    assert again.code == 1 and "FATAL" in again.stderr_tail
    lines = await backend.logs(assignment.instance_id, tail=10)
    assert sum("FATAL" in line for line in lines) == 2


async def test_an_image_that_cannot_be_pulled_fails_with_the_daemons_message(
    backend: ContainerBackend,
) -> None:
    # a registry that does not answer: the pull fails at once with the runtime's words
    assignment = _assignment("127.0.0.1:1/fnplane/missing:1.0")
    with pytest.raises(BackendError) as failure:
        await backend.start(assignment)
    assert failure.value.cause == "image-pull-issues"
    assert "cannot pull image 127.0.0.1:1/fnplane/missing:1.0: " in failure.value.detail
    assert len(failure.value.detail) > len("cannot pull image 127.0.0.1:1/fnplane/missing:1.0: ")
    assert "cannot pull image" in backend.stderr_tail(assignment.instance_id)


async def test_each_instance_is_on_a_network_of_its_own_which_goes_with_it(
    backend: ContainerBackend, client: aiodocker.Docker, container_images: dict[str, str]
) -> None:
    first, second = _assignment(container_images["echo"]), _assignment(container_images["echo"])
    handles = [await backend.start(first), await backend.start(second)]
    for handle in handles:
        # the worker's way in is unchanged: the published port on the host's loopback
        await wait_for(lambda port=handle.port: _healthy(port), timeout_s=30)
    names = [f"fnplane-{first.instance_id}", f"fnplane-{second.instance_id}"]
    assert await _network_names(client, backend.agent_id) == sorted(names)
    assert sorted(await backend.labelled_networks()) == sorted(names)
    subnets = set()
    for name in names:
        # the container's own network and no other: not the runtime's default bridge (10.88.0.0/16)
        networks = await _networks_of(client, name)
        assert list(networks) == [name]
        address = networks[name]["IPAddress"]
        assert address and not address.startswith("10.88."), address
        subnets.add(address.rsplit(".", 1)[0])
    assert len(subnets) == 2

    await backend.stop(first.instance_id)
    assert await _network_names(client, backend.agent_id) == [names[1]]
    assert await _healthy(handles[1].port)
    await backend.stop(second.instance_id)
    assert await _network_names(client, backend.agent_id) == []


async def test_a_start_that_fails_leaves_neither_container_nor_network(
    backend: ContainerBackend, client: aiodocker.Docker, container_images: dict[str, str]
) -> None:
    assignment = _assignment(container_images["crash"])
    handle = await backend.start(assignment)
    assert (await asyncio.wait_for(backend.wait(assignment.instance_id), 30)).code == 1
    # its restart cannot publish the instance's port: someone else holds it now
    with socket.create_server(("127.0.0.1", handle.port)):
        with pytest.raises(BackendError, match="cannot start a container of"):
            await backend.start(assignment)
        assert await _inspect(client, f"fnplane-{assignment.instance_id}") is None
        assert await _network_names(client, backend.agent_id) == []
    await backend.stop(assignment.instance_id)
    assert await _network_names(client, backend.agent_id) == []


async def test_the_runtimes_log_of_a_flood_stays_bounded_and_the_output_after_it_is_kept(
    tmp_path: Path, podman_service: PodmanService, client: aiodocker.Docker, container_images: dict[str, str]
) -> None:
    """A container printing 24 MB: the runtime's own log file (which the agent reads the output from)
    stays within the agent's log size, as does the agent's rotated log, and what it prints after the
    flood reaches the instance log whole."""
    max_bytes = 256 * 1024
    backend = _backend(
        tmp_path / "state",
        podman_service,
        f"test-{uuid.uuid4().hex[:8]}",
        log_max_bytes=max_bytes,
        log_backups=1,
    )
    await backend.connect()
    await backend.cleanup()
    program = (
        "import time\n"
        "for i in range(240000): print('flood %06d ' % i + 'x' * 86)\n"
        "for i in range(5): print('after %d' % i, flush=True); time.sleep(0.3)\n"
        "print('the end', flush=True); time.sleep(120)"
    )
    assignment = _assignment(container_images["python"], f'python3 -c "{program}"')
    try:
        await backend.start(assignment)

        async def ended() -> bool:
            return "the end" in await backend.logs(assignment.instance_id, tail=10)

        await wait_for(ended, timeout_s=60)
        info = await _inspect(client, f"fnplane-{assignment.instance_id}")
        assert info is not None
        assert 0 < await asyncio.to_thread(_size, Path(info["LogPath"])) <= max_bytes
        lines = await backend.logs(assignment.instance_id, tail=10)
        assert [line for line in lines if line.startswith("after")] == [f"after {i}" for i in range(5)]
        # the agent's own copy: the current file and one backup, each rotated at max_bytes
        kept = await asyncio.to_thread(_size, backend.log_path(assignment.instance_id).parent)
        assert kept <= 2 * max_bytes + 64 * 1024
    finally:
        await backend.aclose()


async def test_a_new_run_of_the_agent_removes_what_a_killed_one_left(
    tmp_path: Path,
    podman_service: PodmanService,
    client: aiodocker.Docker,
    container_images: dict[str, str],
) -> None:
    agent_id = f"test-{uuid.uuid4().hex[:8]}"
    state_dir = tmp_path / "state"
    first = _backend(state_dir, podman_service, agent_id)
    await first.connect()
    await first.cleanup()
    assignment = _assignment(container_images["echo"])
    await first.start(assignment)
    # another agent's container, which must survive
    other = _backend(tmp_path / "other", podman_service, f"test-{uuid.uuid4().hex[:8]}")
    await other.connect()
    await other.cleanup()
    kept = _assignment(container_images["echo"])
    await other.start(kept)
    # the first agent dies without stopping anything (its lock goes with its process)
    first.table.unlock()
    # and a network that a start cut short by the kill left without its container
    await client.networks.create(
        {
            "Name": f"fnplane-orphan-{agent_id}",
            "Labels": {"fnplane.platform": "fnplane", "fnplane.agent": agent_id},
        }
    )
    try:
        second = _backend(state_dir, podman_service, agent_id)
        assert await second.cleanup() == [assignment.instance_id]
        assert await _inspect(client, f"fnplane-{assignment.instance_id}") is None
        assert await _inspect(client, f"fnplane-{kept.instance_id}") is not None
        # the earlier run's networks are gone, the other agent's stays with its container
        assert await _network_names(client, agent_id) == []
        assert await _network_names(client, other.agent_id) == [f"fnplane-{kept.instance_id}"]
        await second.aclose()
    finally:
        await first.aclose()
        await other.aclose()
    assert await _inspect(client, f"fnplane-{kept.instance_id}") is None
    assert await _network_names(client, other.agent_id) == []


async def test_the_agent_runs_a_container_function_until_undeploy(
    stack: Platform, podman_service: PodmanService, client: aiodocker.Docker
) -> None:
    agent = await stack.start_agent(backend="container", container_host=podman_service.url)
    assert agent.isolation == "container"
    fn = await create_function(
        stack.client,
        "python3 /app/echo_server.py",
        containerImage="localhost/fnplane-echo:test",
    )
    assert (await deploy(stack.client, fn)).status_code == 200
    active = await wait_status(stack.client, fn, "ACTIVE", timeout_s=60)
    [instance] = active["activeInstances"]
    instance_id = instance["instanceId"]
    port = agent.supervisors[instance_id].port
    assert port is not None and await _healthy(port)
    assert await _inspect(client, f"fnplane-{instance_id}") is not None

    async def logged() -> bool:
        logs = await stack.client.get(
            f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}/instances/{instance_id}/logs",
            # the whole log: each health check adds a line of the server's own after it
            params={"tail": 1000},
        )
        assert logs.status_code == 200, logs.text
        return "echo: listening on 0.0.0.0:8000" in logs.text

    # the instance logs endpoint, fed from the container's output
    await wait_for(logged, timeout_s=30)  # the runtime streams output a moment after it is written

    undeploy = await stack.client.delete(
        f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    )
    assert undeploy.status_code == 200, undeploy.text

    async def removed() -> bool:
        return await _inspect(client, f"fnplane-{instance_id}") is None and not stack.leftovers()

    await wait_for(removed, timeout_s=30)


async def test_a_crashing_container_function_fails_with_its_log_tail(
    stack: Platform, podman_service: PodmanService
) -> None:
    await stack.start_agent(
        backend="container", container_host=podman_service.url, restart_limit=1, restart_window_s=60.0
    )
    fn = await create_function(
        stack.client,
        "sh -c 'echo crash: loading model; echo crash: FATAL: no model here >&2; exit 1'",
        containerImage="localhost/fnplane-crash:test",
    )
    assert (await deploy(stack.client, fn)).status_code == 200
    failed = await wait_status(stack.client, fn, "ERROR", timeout_s=60)
    text = str(failed)
    assert "FATAL: no model here" in text, text


async def test_a_killed_agent_process_leaves_no_container_behind(
    stack: Platform, podman_service: PodmanService, client: aiodocker.Docker
) -> None:
    container_env = {"FNPLANE_AGENT_BACKEND": "container", "FNPLANE_AGENT_CONTAINER_HOST": podman_service.url}
    first, agent_id = await stack.start_agent_process("local", env=container_env)
    fn = await create_function(
        stack.client, "python3 /app/echo_server.py", containerImage="localhost/fnplane-echo:test"
    )

    async def deployed() -> bool:
        # 400 "no available clusters" until the child agent has registered its cluster
        response = await deploy(stack.client, fn)
        assert response.status_code in (200, 400), response.text
        return response.status_code == 200

    await wait_for(deployed, interval_s=0.2)
    active = await wait_status(stack.client, fn, "ACTIVE", timeout_s=60)
    [instance] = active["activeInstances"]
    name = f"fnplane-{instance['instanceId']}"
    first_id = (await _inspect(client, name) or {})["Id"]

    first.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    # the container outlives its agent: the runtime, not the agent, is its parent
    assert await _inspect(client, name) is not None

    second = await stack.start_agent("local", backend="container", container_host=podman_service.url)
    assert second.agent_id == agent_id
    # the earlier run's container is gone before the new agent runs anything
    assert await _inspect(client, first_id) is None
    # and the control plane's instance runs again, in a new container of the same name

    async def running_again() -> bool:
        supervisor = second.supervisors.get(instance["instanceId"])
        return supervisor is not None and supervisor.healthy and await _inspect(client, name) is not None

    await wait_for(running_again, timeout_s=60)
    await wait_status(stack.client, fn, "ACTIVE", timeout_s=60)
    assert [c.name for c in await second.backend.labelled_containers()] == [name]
