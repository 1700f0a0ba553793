"""The container tests' environment works: a real Podman service answers the Docker Engine API (through
aiodocker, as the container backend talks to it) and runs the locally built test images."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiodocker
import httpx
import pytest

from podman import PodmanService


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def client(podman_service: PodmanService) -> AsyncIterator[aiodocker.Docker]:
    """An aiodocker client on the service; every container this test labelled is removed afterwards."""
    async with aiodocker.Docker(url=podman_service.url) as client:
        try:
            yield client
        finally:
            mine = {"label": labels(podman_service)}
            for container in await client.containers.list(all=True, filters=mine):
                await container.delete(force=True)


def labels(podman_service: PodmanService) -> list[str]:
    return [f"{key}={value}" for key, value in podman_service.labels.items()]


def published(port: int, host_port: int) -> dict[str, Any]:
    """Config fields that publish a container's port on a loopback port of the host."""
    return {
        "ExposedPorts": {f"{port}/tcp": {}},
        "HostConfig": {
            "PortBindings": {f"{port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]}
        },
    }


async def wait_http(url: str, timeout_s: float) -> httpx.Response:
    async with httpx.AsyncClient(timeout=2.0) as http, asyncio.timeout(timeout_s):
        while True:
            try:
                return await http.post(url, json={"hello": "container"})
            except httpx.TransportError:
                await asyncio.sleep(0.1)


async def test_echo_image_answers_on_a_published_port(
    podman_service: PodmanService, container_images: dict[str, str], client: aiodocker.Docker
) -> None:
    port = free_port()
    name = f"fnplane-test-echo-{uuid.uuid4().hex[:8]}"
    config = {
        "Image": container_images["echo"],
        "Env": ["PORT=8000"],
        "Labels": podman_service.labels,
        **published(8000, port),
    }
    container = await client.containers.run(config, name=name)

    response = await wait_http(f"http://127.0.0.1:{port}/infer", timeout_s=20)
    assert response.status_code == 200
    assert response.json() == {"echo": {"hello": "container"}, "path": "/infer"}
    logs = "".join(await container.log(stdout=True, stderr=True))
    assert "echo: listening on 0.0.0.0:8000" in logs
    assert '"POST /infer HTTP/1.1" 200' in logs
    # the podman CLI sees the same container through the same service
    ps = await asyncio.to_thread(podman_service.podman, "ps", "--format", "{{.Names}}")
    assert name in ps.stdout

    await container.stop(t=5)
    assert (await container.show())["State"]["Status"] == "exited"
    await container.delete()
    assert not await client.containers.list(all=True, filters={"name": [name]})


async def test_crash_image_exits_1_with_its_output(
    podman_service: PodmanService, container_images: dict[str, str], client: aiodocker.Docker
) -> None:
    container = await client.containers.run(
        {"Image": container_images["crash"], "Labels": podman_service.labels}
    )

    async with asyncio.timeout(30):
        assert (await container.wait())["StatusCode"] == 1
    assert "".join(await container.log(stdout=True)) == "crash: loading model ...\n"
    assert "".join(await container.log(stderr=True)) == "crash: FATAL: no model here\n"
    await container.delete()


async def test_inv_image_serves_sse(
    podman_service: PodmanService, container_images: dict[str, str], client: aiodocker.Docker
) -> None:
    port = free_port()
    config = {
        "Image": container_images["inv"],
        "Env": ["PORT=9000"],
        "Labels": podman_service.labels,
        **published(9000, port),
    }
    await client.containers.run(config)

    await wait_http(f"http://127.0.0.1:{port}/echo", timeout_s=20)
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{port}/sse?events=3&interval=0")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.count("data:") == 3
