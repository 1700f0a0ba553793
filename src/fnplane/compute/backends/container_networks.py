"""A network of its own for each function container, so that no container reaches another.

On the runtime's default bridge (Podman's `podman`, 10.88.0.0/16; Docker's `docker0`) every container
reaches every other one's address and ports: one tenant's function could call another's server and
read what it answers. So each instance gets a bridge network of its own, named and labelled as its
container is, created just before the container and removed just after it:

* Podman: a bridge with the `isolate` option, which drops traffic between two isolated networks (CNI's
  firewall plugin `ingressPolicy: same-bridge`, netavark's own isolation rules); not isolated from the
  runtime's default network `podman`, where fnplane puts nothing. It is not `internal`, so the container
  keeps its way out (NAT through the host, as on the default bridge).
* Docker: a user-defined bridge, which Docker isolates from every other bridge by itself
  (`DOCKER-ISOLATION-STAGE-*`); the option is Podman's only and is not sent.

The container's port stays published on 127.0.0.1 through the kernel's NAT (no process in the request
path). Every network carries the platform's and the agent's labels: an agent's start removes what an
earlier run of it left, like its containers (docs/backends.md, "Network").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiodocker
from aiodocker.networks import DockerNetwork

_NOT_FOUND = 404


def network_name(instance_id: str) -> str:
    """The instance's network: the name of its container (the runtime keeps the two apart)."""
    return f"fnplane-{instance_id}"


def network_config(name: str, labels: Mapping[str, str], *, podman: bool) -> dict[str, Any]:
    """The body of `POST /networks/create` for one instance's network."""
    config: dict[str, Any] = {"Name": name, "Driver": "bridge", "Internal": False, "Labels": dict(labels)}
    if podman:
        # Podman's bridges reach one another unless both are isolated. Its compatible API isolates the
        # networks it creates already (as Docker does); said here all the same, since everything rests on
        # it (the API answers with a warning that it does not know the option, and applies it)
        config["Options"] = {"isolate": "true"}
    return config


def network_missing(error: aiodocker.DockerError) -> bool:
    return error.status == _NOT_FOUND or "network not found" in str(error.message or "").lower()


async def create_network(client: aiodocker.Docker, config: Mapping[str, Any], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        await client.networks.create(dict(config))


async def remove_network(client: aiodocker.Docker, name_or_id: str, timeout_s: float) -> None:
    """Remove a network whose containers are gone (one that is already gone is no error)."""
    try:
        async with asyncio.timeout(timeout_s):
            await DockerNetwork(client, name_or_id).delete()
    except aiodocker.DockerError as error:
        if not network_missing(error):
            raise


async def labelled_networks(client: aiodocker.Docker, labels: Mapping[str, str]) -> list[str]:
    """The names of the networks carrying every one of `labels`."""
    filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
    return [str(item.get("Name") or item.get("Id")) for item in await client.networks.list(filters=filters)]
