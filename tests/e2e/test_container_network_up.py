"""Tenants' function containers cannot reach one another (docs/security.md, "Container functions"):
`fnplane up --backend container` on a real Podman runs two functions of tests/e2e/network_probe_function.py,
each asked through pexec which addresses it can connect to. On the runtime's shared default bridge both
would reach the other's server at its address; each on its own isolated network neither does, while the
platform still serves both and each keeps its way out through the host."""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
from pathlib import Path
from typing import Any

import httpx
from up_process import UpProcess, deploy_function

from podman import PodmanService

PORT = 8000
# the runtime's shared default bridge (Podman's `podman` network), where the containers used to be
DEFAULT_BRIDGE = ipaddress.ip_network("10.88.0.0/16")


def _probe_function(name: str, image: str) -> dict[str, Any]:
    health = {"protocol": "HTTP", "port": PORT, "uri": "/v2/health/ready", "timeout": "PT10S"}
    return {
        "name": name,
        "inferenceUrl": "/probe",
        "inferencePort": PORT,
        "containerImage": image,
        "health": {**health, "expectedStatusCode": 200},
    }


def _container(podman_service: PodmanService, function_id: str) -> dict[str, Any]:
    """The function's one container, as the Engine API inspects it."""
    filters = json.dumps({"label": [f"fnplane.function={function_id}"]})
    with podman_service.engine() as engine:
        [listed] = engine.get("/containers/json", params={"filters": filters}).json()
        return dict(engine.get(f"/containers/{listed['Id']}/json").json())


def _address(container: dict[str, Any]) -> tuple[str, str, str]:
    """(its network's name, its address there, that network's gateway: the host)."""
    [(name, network)] = container["NetworkSettings"]["Networks"].items()
    return name, network["IPAddress"], network["Gateway"]


def _labelled(podman_service: PodmanService, *listing: str, function_id: str) -> str:
    """What `podman <listing> -q` finds of the function (by its label)."""
    found = podman_service.podman(*listing, "-q", "--filter", f"label=fnplane.function={function_id}")
    return found.stdout.strip()


def test_function_containers_cannot_reach_one_another_and_both_are_served(
    tmp_path: Path, start_up: type[UpProcess], podman_service: PodmanService, container_images: dict[str, str]
) -> None:
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(
        tmp_path / "home",
        env={**podman_service.env, "FNPLANE_ADMIN_KEY": key},
        args=["--backend", "container"],
    )
    up.wait_healthy()
    headers = {"Authorization": f"Bearer {key}"}
    image = container_images["network-probe"]
    first = deploy_function(up, headers, _probe_function("probe-a", image))
    second = deploy_function(up, headers, _probe_function("probe-b", image))
    containers = {fn["id"]: _container(podman_service, fn["id"]) for fn in (first, second)}
    networks = {fid: _address(container) for fid, container in containers.items()}

    # a service of the host's on all its addresses: the way out through the host, the positive control
    with (
        socket.create_server(("0.0.0.0", 0)) as host_service,
        httpx.Client(base_url=up.url, headers=headers, timeout=60) as client,
    ):
        host_port = host_service.getsockname()[1]
        for fn, other in ((first, second), (second, first)):
            _, own, gateway = networks[fn["id"]]
            _, theirs, _ = networks[other["id"]]
            [binding] = containers[other["id"]]["NetworkSettings"]["Ports"][f"{PORT}/tcp"]
            targets = {
                "the other function's server": f"{theirs}:{PORT}",
                # published on the host's loopback only, for the worker
                "the other function's published port": f"{gateway}:{binding['HostPort']}",
                "the platform's HTTP port (on loopback)": f"{gateway}:{up.port}",
                "its own server": f"{own}:{PORT}",
                "the host's service": f"{gateway}:{host_port}",
            }
            # through the platform: the gateway, the bus, its worker, its container
            answer = client.post(
                f"/v2/nvcf/pexec/functions/{fn['id']}", json={"targets": list(targets.values()), "timeout": 3}
            )
            assert answer.status_code == 200, answer.text
            results = {what: answer.json()["results"][target] for what, target in targets.items()}
            assert results["the other function's server"] != "connected", results
            assert results["the other function's published port"] != "connected", results
            assert results["the platform's HTTP port (on loopback)"] != "connected", results
            assert results["its own server"] == "connected", results
            assert results["the host's service"] == "connected", results
    # a network each, of its own, off the shared bridge
    assert len({name for name, _, _ in networks.values()}) == 2
    for name, address, _ in networks.values():
        assert name.startswith("fnplane-") and ipaddress.ip_address(address) not in DEFAULT_BRIDGE

    assert up.stop() == 0
    # nothing of either function is left: neither its container nor its network
    for fn in (first, second):
        assert not _labelled(podman_service, "ps", "--all", function_id=fn["id"])
        assert not _labelled(podman_service, "network", "ls", function_id=fn["id"])
