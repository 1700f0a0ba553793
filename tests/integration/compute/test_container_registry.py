"""The container backend pulling from a real registry with authentication (tests/container_registry.py):
the account's login goes with the pull, the registry's refusal is the instance's error, and a pull under
way says how far it got."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from compute_stack import wait_for

from assignments import make_assignment
from container_registry import ContainerRegistry
from fnplane.compute.backends.base import BackendError
from fnplane.compute.backends.container import ContainerBackend
from podman import PodmanService


@pytest.fixture
async def backend(
    tmp_path: Path, podman_service: PodmanService, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ContainerBackend]:
    # no `docker login` of this machine's user stands in for a missing credential
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    running = ContainerBackend(
        state_dir=tmp_path / "state",
        agent_id=f"test-{uuid.uuid4().hex[:8]}",
        stop_grace_s=2.0,
        host=podman_service.url,
    )
    await running.connect()
    await running.cleanup()
    try:
        yield running
    finally:
        await running.aclose()
        await running.cleanup()


def _login(registry: ContainerRegistry, password: str) -> dict[str, Any]:
    return {"username": registry.username, "password": password, "serveraddress": registry.host}


async def _serves(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            return (await http.post(f"http://127.0.0.1:{port}/echo", json={"n": 1})).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_pull_with_the_accounts_login_says_how_far_it_got_and_the_image_serves(
    backend: ContainerBackend, container_registry: ContainerRegistry
) -> None:
    container_registry.forget_local()
    image = container_registry.image
    assignment = make_assignment(
        "python3 /app/echo_server.py",
        containerImage=image,
        registryAuth=_login(container_registry, container_registry.password),
    )
    said: list[str] = []

    async def says_some_layers_are_missing() -> bool:
        return any(0 < here < total for here, total in map(_layers, said))

    # the registry sends the manifest and the first MiB of the image's own layer, then waits
    container_registry.gate.hold_after(1024 * 1024)
    try:
        start = asyncio.create_task(backend.start(assignment, said.append))
        await wait_for(lambda: _true(container_registry.gate.held.is_set()), timeout_s=30)
        # the echo image's layers were here already, the new one is not
        await wait_for(says_some_layers_are_missing, timeout_s=10)
    finally:
        container_registry.gate.release()
    handle = await asyncio.wait_for(start, 30)
    await wait_for(lambda: _serves(handle.port), timeout_s=30)
    assert said[0] == f"pulling image {image}"
    assert all(line.startswith(f"pulling image {image}") for line in said)
    here, total = _layers(said[-1])
    assert here == total > 1, said
    assert container_registry.local_images() == [image]
    await backend.stop(assignment.instance_id)


@pytest.mark.parametrize("password", [None, "wrong"], ids=["no-login", "wrong-password"])
async def test_a_pull_without_the_right_login_fails_with_the_registrys_words(
    backend: ContainerBackend, container_registry: ContainerRegistry, password: str | None
) -> None:
    container_registry.forget_local()
    login = None if password is None else _login(container_registry, password)
    assignment = make_assignment(None, containerImage=container_registry.image, registryAuth=login)
    with pytest.raises(BackendError) as failure:
        await backend.start(assignment, lambda _: None)
    assert failure.value.cause == "image-pull-issues"
    assert failure.value.detail.startswith(f"cannot pull image {container_registry.image}: ")
    # Podman's words for the registry's 401: "unauthorized: authentication required"
    assert "unauthorized" in failure.value.detail or "authentication required" in failure.value.detail
    assert container_registry.local_images() == []


async def _true(value: bool) -> bool:
    return value


def _layers(line: str) -> tuple[int, int]:
    """(here, total) of a progress line's "N of M layers", (0, 0) when it names none."""
    match = re.search(r": (\d+) of (\d+) layers", line)
    return (int(match[1]), int(match[2])) if match else (0, 0)
