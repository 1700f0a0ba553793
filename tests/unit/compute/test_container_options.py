"""What the container backend creates a container with, and where it finds the runtime (no runtime here)."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from compute_support import make_assignment

from fnplane.compute.backends.base import BackendError
from fnplane.compute.backends.container import (
    ContainerBackend,
    ContainerLimits,
    ContainerRuntimeError,
    LabelledContainer,
    api_version,
    container_config,
    container_labels,
    container_name,
    runtime_log_config,
    runtime_message,
    runtime_url,
)
from fnplane.compute.backends.container_networks import network_config, network_name
from fnplane.compute.backends.gpus import GpuPool, gpu_host_config
from fnplane.compute.backends.image_pull import docker_login, pull_error, pull_reference
from fnplane.compute.backends.libpod import libpod_spec, needs_libpod, podman_version
from fnplane.compute.inventory import GpuDevices, nvml_devices
from fnplane.compute.settings import AgentSettings, default_inventory
from fnplane.shared.models.compute import GpuInventory, HealthCheck, RegistryAuth


def _options(
    tmp_path: Path,
    limits: ContainerLimits | None = None,
    gpus: dict[str, Any] | None = None,
    health_host_port: int | None = None,
    **overrides: object,
) -> dict[str, Any]:
    fields: dict[str, object] = {
        "containerImage": "localhost/fnplane-echo:test",
        "containerEnvironment": {"MODEL": "tiny", "PORT": "1", "FNPLANE_AGENT_TOKEN": "secret"},
        "inferencePort": 9000,
        # health on the inference port unless a test says otherwise
        "health": HealthCheck(
            protocol="HTTP", uri="/v2/health/ready", port=9000, timeoutSeconds=2, expectedStatusCode=200
        ),
        **overrides,
    }
    assignment = make_assignment("--port $(PORT) --greeting 'hello world'", **fields)
    return container_config(
        assignment,
        agent_id="agent-1",
        host_port=43210,
        request_dir=tmp_path / "requests" / assignment.instance_id,
        limits=limits or ContainerLimits(),
        network=network_name(assignment.instance_id),
        log_max_bytes=10 * 1024 * 1024,
        log_files=3,
        gpus=gpus,
        health_host_port=health_host_port,
    )


def test_args_are_the_containers_command_split_and_expanded_against_its_environment(tmp_path: Path) -> None:
    config = _options(tmp_path)
    # the declared port, not the host port: inside the container the function listens on its own
    assert config["Cmd"] == ["--port", "9000", "--greeting", "hello world"]
    assert "Entrypoint" not in config  # the image's own


def test_no_args_keep_the_images_command(tmp_path: Path) -> None:
    assert "Cmd" not in _options(tmp_path, containerArgs=None)
    assert "Cmd" not in _options(tmp_path, containerArgs="  ")


def test_broken_args_are_a_start_failure(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="not a valid command line"):
        _options(tmp_path, containerArgs="python 'unterminated")


def test_environment_is_the_functions_and_nvcfs_and_nothing_of_the_agent(tmp_path: Path) -> None:
    pairs = _options(tmp_path)["Env"]
    assert isinstance(pairs, list)
    env = dict(pair.split("=", 1) for pair in pairs)
    assert len(env) == len(pairs)
    assert env["MODEL"] == "tiny"
    # the platform's values win over the user's
    assert env["PORT"] == env["INFERENCE_PORT"] == "9000"
    assert env["NVCF_FUNCTION_NAME"] == "echo"
    assert "FNPLANE_AGENT_TOKEN" not in env
    # the image's own PATH and HOME stay: the agent's are not passed
    assert "PATH" not in env and "HOME" not in env


def test_the_port_is_published_on_loopback_only_and_only_the_request_dir_is_mounted(tmp_path: Path) -> None:
    config = _options(tmp_path)
    host = config["HostConfig"]
    assert config["ExposedPorts"] == {"9000/tcp": {}}
    assert host["PortBindings"] == {"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "43210"}]}
    assert "Binds" not in host and "Volumes" not in config
    [mount] = host["Mounts"]
    assert mount["Type"] == "bind" and mount["ReadOnly"] is False
    assert mount["Source"] == mount["Target"]
    assert Path(mount["Source"]).parent == tmp_path / "requests"


def test_a_health_port_of_its_own_is_published_on_loopback_beside_the_inference_port(tmp_path: Path) -> None:
    health = HealthCheck(protocol="HTTP", uri="/h", port=8000, timeoutSeconds=2, expectedStatusCode=200)
    config = _options(
        tmp_path, containerArgs="--health $(HEALTH_PORT)", health=health, health_host_port=43211
    )
    assert config["ExposedPorts"] == {"9000/tcp": {}, "8000/tcp": {}}
    assert config["HostConfig"]["PortBindings"] == {
        "9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "43210"}],
        "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "43211"}],
    }
    # inside, the function's own ports
    env = dict(pair.split("=", 1) for pair in config["Env"])
    assert env["PORT"] == "9000" and env["HEALTH_PORT"] == env["INFERENCE_HEALTH_PORT"] == "8000"
    assert config["Cmd"] == ["--health", "8000"]
    assert libpod_spec("i", "n", config)["portmappings"] == [
        {"container_port": 9000, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 43210},
        {"container_port": 8000, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 43211},
    ]
    # the health port shared with the inference port: one port published, HEALTH_PORT the same
    shared = _options(tmp_path, health=health.model_copy(update={"port": 9000}), health_host_port=43211)
    assert list(shared["HostConfig"]["PortBindings"]) == ["9000/tcp"]
    assert dict(pair.split("=", 1) for pair in shared["Env"])["HEALTH_PORT"] == "9000"


def test_the_container_is_on_a_network_of_its_own_isolated_on_podman(tmp_path: Path) -> None:
    config = _options(tmp_path)
    instance = config["Labels"]["fnplane.instance"]
    assert config["HostConfig"]["NetworkMode"] == network_name(instance) == f"fnplane-{instance}"
    labels = config["Labels"]
    podman = network_config(network_name(instance), labels, podman=True)
    assert podman == {
        "Name": f"fnplane-{instance}",
        "Driver": "bridge",
        # not internal: the function keeps its way out
        "Internal": False,
        "Labels": labels,
        "Options": {"isolate": "true"},
    }
    # Docker isolates user-defined bridges from each other by itself; the option is Podman's
    docker = network_config(network_name(instance), labels, podman=False)
    assert "Options" not in docker and docker["Internal"] is False


def test_the_runtimes_copy_of_the_output_is_bounded_like_the_agents(tmp_path: Path) -> None:
    assert _options(tmp_path)["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": str(10 * 1024 * 1024), "max-file": "3"},
    }
    # never below what Podman accepts, and at least one file
    assert runtime_log_config(100, 0)["Config"] == {"max-size": str(64 * 1024), "max-file": "1"}


def test_the_container_is_unprivileged_and_labelled(tmp_path: Path) -> None:
    config = _options(tmp_path)
    host = config["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] == ["NET_BIND_SERVICE"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False
    assert host["Init"] is True
    assert "User" not in config  # the image's own user
    assert config["Tty"] is False  # the output stream is multiplexed
    labels = config["Labels"]
    assert isinstance(labels, dict)
    assert labels["fnplane.platform"] == "fnplane"
    assert labels["fnplane.agent"] == "agent-1"
    assert set(labels) == {
        "fnplane.platform",
        "fnplane.agent",
        "fnplane.function",
        "fnplane.version",
        "fnplane.instance",
    }
    assert container_name(labels["fnplane.instance"]) == f"fnplane-{labels['fnplane.instance']}"


def test_the_operators_labels_join_and_never_replace_the_platforms() -> None:
    assignment = make_assignment("x", containerImage="localhost/fnplane-echo:test")
    labels = container_labels("agent-1", assignment, {"team": "ml", "fnplane.agent": "forged"})
    assert labels["team"] == "ml" and labels["fnplane.agent"] == "agent-1"


def test_limits_per_instance_type_with_defaults() -> None:
    limits = ContainerLimits(
        cpus={"BIG": 8.0}, cpus_default=1.5, memory_bytes={"BIG": 2**34}, memory_default_bytes=2**30
    )
    assert limits.host_config("BIG") == {"NanoCpus": 8_000_000_000, "Memory": 2**34, "MemorySwap": 2**34}
    assert limits.host_config("OTHER") == {"NanoCpus": 1_500_000_000, "Memory": 2**30, "MemorySwap": 2**30}
    assert ContainerLimits().host_config("ANY") == {}


def test_the_limits_are_in_the_host_config(tmp_path: Path) -> None:
    host = _options(tmp_path, limits=ContainerLimits(cpus_default=2.0))["HostConfig"]
    assert host["NanoCpus"] == 2_000_000_000
    assert "Memory" not in host and "DeviceRequests" not in host


def test_gpus_are_asked_for_by_device_index_or_cdi_name() -> None:
    assert gpu_host_config([], "cdi") == {} == gpu_host_config([], "device-request")
    assert gpu_host_config([0, 3], "device-request") == {
        "DeviceRequests": [{"DeviceIDs": ["0", "3"], "Capabilities": [["gpu"]]}]
    }
    assert gpu_host_config([2], "cdi") == {
        "DeviceRequests": [{"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=2"]}]
    }


def test_the_pool_hands_out_free_devices_of_the_gpu_keeps_them_across_restarts_and_takes_them_back() -> None:
    devices = GpuDevices({"H100": [0, 1, 2, 3], "L40S": [4]}, {"H100_1x": 1, "H100_2x": 2, "L40S_1x": 1})
    pool = GpuPool(devices, "cdi")
    assert pool.take("a", "H100", "H100_2x") == [0, 1]
    assert pool.take("b", "H100", "H100_1x") == [2]
    assert pool.take("a", "H100", "H100_2x") == [0, 1]  # a restart keeps its devices
    assert pool.take("c", "L40S", "L40S_1x") == [4]
    with pytest.raises(BackendError) as failure:
        pool.take("d", "H100", "H100_2x")
    assert "needs 2 H100 GPU(s); 1 of this agent's 4 are free" in failure.value.detail
    pool.give_back("a")
    assert pool.take("d", "H100", "H100_2x") == [0, 1]
    # an instance type the agent does not know has no GPUs to ask for
    assert pool.take("e", "H100", "UNKNOWN") == []
    assert pool.host_config([]) == {}


def test_the_container_asks_for_its_devices(tmp_path: Path) -> None:
    host = _options(tmp_path, gpus=gpu_host_config([1], "cdi"))["HostConfig"]
    assert host["DeviceRequests"] == [{"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=1"]}]
    assert "DeviceRequests" not in _options(tmp_path)["HostConfig"]


def test_a_configured_inventory_is_numbered_in_its_order() -> None:
    inventory = [
        GpuInventory.model_validate(
            {"gpu": "L40S", "capacity": 2, "instanceTypes": [{"name": "L40S_1x", "gpuCount": 1}]}
        ),
        GpuInventory.model_validate(
            {"gpu": "H100", "capacity": 3, "instanceTypes": [{"name": "H100_2x", "gpuCount": 2}]}
        ),
    ]
    devices = GpuDevices.numbered(inventory)
    assert devices.indices == {"L40S": [0, 1], "H100": [2, 3, 4]}
    assert devices.counts == {"L40S_1x": 1, "H100_2x": 2}
    # NVML's own numbering, per GPU name
    nvml = nvml_devices([(0, "H100"), (1, "L40S"), (2, "H100")])
    assert nvml.indices == {"H100": [0, 2], "L40S": [1]}
    assert nvml.counts == {"LOCAL.GPU.H100_1x": 1, "LOCAL.GPU.L40S_1x": 1}


def test_agent_settings_fake_pools_have_no_real_gpus_a_configured_one_when_it_says_so(tmp_path: Path) -> None:
    assert AgentSettings(home=tmp_path, discover_gpus=False).real_gpus() is None
    assert AgentSettings(home=tmp_path, inventory=[]).real_gpus() is None
    configured = AgentSettings(home=tmp_path, inventory=default_inventory(), inventory_gpus_real=True)
    devices = configured.real_gpus()
    assert devices is not None and devices.indices == {"L40S": list(range(8))}
    assert AgentSettings(home=tmp_path).container_gpu_request == "device-request"


def test_podman_is_told_apart_and_cdi_devices_before_5_4_go_through_libpod() -> None:
    assert podman_version({"Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]}) == (4, 3)
    assert podman_version({"Components": [{"Name": "Engine", "Version": "29.0.1"}]}) is None
    assert podman_version({"Components": [{"Name": "Podman Engine", "Version": "dev"}]}) is None
    assert podman_version({}) is None
    cdi = {"HostConfig": gpu_host_config([0], "cdi")}
    toolkit = {"HostConfig": gpu_host_config([0], "device-request")}
    assert needs_libpod(cdi, (4, 3)) and needs_libpod(cdi, (5, 3))
    assert not needs_libpod(cdi, (5, 4)) and not needs_libpod(cdi, None)
    assert not needs_libpod(toolkit, (4, 3)) and not needs_libpod({"HostConfig": {}}, (4, 3))


def test_the_libpod_spec_says_what_the_engine_api_body_says(tmp_path: Path) -> None:
    config = _options(
        tmp_path,
        limits=ContainerLimits(cpus_default=1.5, memory_default_bytes=2**28),
        gpus=gpu_host_config([0, 1], "cdi"),
    )
    spec = libpod_spec("nvcr.io/a/b:1", "fnplane-i", config)
    assert spec["name"] == "fnplane-i" and spec["image"] == "nvcr.io/a/b:1"
    assert spec["devices"] == [{"path": "nvidia.com/gpu=0"}, {"path": "nvidia.com/gpu=1"}]
    assert spec["env"] == dict(item.split("=", 1) for item in config["Env"])
    assert spec["labels"] == config["Labels"] and spec["terminal"] is False
    assert spec["command"] == config["Cmd"]
    assert spec["portmappings"] == [
        {"container_port": 9000, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 43210}
    ]
    [mount] = config["HostConfig"]["Mounts"]
    assert spec["mounts"] == [
        {
            "type": "bind",
            "source": mount["Source"],
            "destination": mount["Target"],
            "options": ["rbind", "rw"],
        }
    ]
    assert spec["cap_drop"] == ["ALL"] and spec["cap_add"] == ["NET_BIND_SERVICE"]
    assert spec["no_new_privileges"] is True and spec["privileged"] is False and spec["init"] is True
    assert spec["resource_limits"] == {
        "cpu": {"quota": 150_000, "period": 100_000},
        "memory": {"limit": 2**28, "swap": 2**28},
    }
    assert spec["netns"] == {"nsmode": "bridge"}
    assert spec["Networks"] == {config["HostConfig"]["NetworkMode"]: {}}
    assert spec["log_configuration"] == {"driver": "json-file", "size": 10 * 1024 * 1024}
    # a field it cannot translate is an error, never dropped
    with pytest.raises(ValueError, match=r"HostConfig\.ShmSize"):
        libpod_spec("i", "n", {**config, "HostConfig": {**config["HostConfig"], "ShmSize": 1}})
    with pytest.raises(ValueError, match="non-CDI"):
        libpod_spec("i", "n", {"HostConfig": gpu_host_config([0], "device-request")})


def test_the_runtime_is_the_setting_then_docker_host_then_container_host_then_a_socket() -> None:
    env = {"DOCKER_HOST": "unix:///d.sock", "CONTAINER_HOST": "unix:///c.sock"}
    assert runtime_url("tcp://h:2375", env) == "tcp://h:2375"
    assert runtime_url("", env) == "unix:///d.sock"
    assert runtime_url("", {"CONTAINER_HOST": "unix:///c.sock"}) == "unix:///c.sock"
    podman_only = runtime_url("", {}, exists=lambda path: path == "/run/podman/podman.sock")
    assert podman_only == "unix:///run/podman/podman.sock"
    assert runtime_url("", {}, exists=lambda path: False) == "unix:///var/run/docker.sock"


def test_a_failed_pull_is_found_in_its_progress_stream() -> None:
    assert pull_error({"status": "Pulling"}) is None
    assert pull_error({"error": "x", "errorDetail": {"message": "manifest unknown"}}) == "manifest unknown"
    assert pull_error({"error": "denied"}) == "denied"


def test_a_pull_with_a_credential_names_the_registry_host() -> None:
    auth = {"username": "u", "password": "p", "serveraddress": "docker.io"}
    # without a credential the reference is the image's own
    assert pull_reference("team/model:1", None) == "team/model:1"
    # aiodocker takes the credential's serveraddress from the first component: it must be the host
    assert pull_reference("team/model:1", auth) == "docker.io/team/model:1"
    assert pull_reference("python:3", auth) == "docker.io/python:3"
    assert pull_reference("nvcr.io/team/model:1", auth) == "nvcr.io/team/model:1"
    assert pull_reference("localhost:5000/model", auth) == "localhost:5000/model"


def test_without_a_credential_of_ours_the_agent_users_docker_login_is_used() -> None:
    config = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpodWI="},
            "nvcr.io": {"auth": "JG9hdXRodG9rZW46bnZhcGk="},
            "ghcr.io": {"identitytoken": "tok"},
            "quay.io": {},
        },
        "credsStore": "desktop",
    }
    assert docker_login(config, "docker.io") == {"auth": "dXNlcjpodWI="}
    assert docker_login(config, "nvcr.io") == {"auth": "JG9hdXRodG9rZW46bnZhcGk="}
    assert docker_login(config, "ghcr.io") == {"identitytoken": "tok"}
    # an entry without a secret (a credential helper's) and a registry without a login: nothing
    assert docker_login(config, "quay.io") is None
    assert docker_login(config, "localhost:5000") is None
    assert docker_login({}, "docker.io") is None


def test_the_api_version_is_the_daemons_newest_up_to_ours() -> None:
    # Podman 4.3 (this machine's): it advertises 1.41 and accepts any version in the path
    assert api_version({"ApiVersion": "1.41", "MinAPIVersion": "1.24"}) == "v1.41"
    # Docker 29 refuses clients below 1.44
    assert api_version({"ApiVersion": "1.52", "MinAPIVersion": "1.44"}) == "v1.44"
    assert api_version({"ApiVersion": "1.43", "MinAPIVersion": "1.12"}) == "v1.43"
    # a daemon whose oldest is newer than ours gets its oldest, not a refusal
    assert api_version({"ApiVersion": "1.60", "MinAPIVersion": "1.50"}) == "v1.50"
    assert api_version({}) == "v1.44"


def test_the_daemons_message_is_kept() -> None:
    import aiodocker

    assert runtime_message(aiodocker.DockerError(404, "no such image: nope")) == "no such image: nope"
    assert runtime_message(TimeoutError()) == "TimeoutError"


def test_a_listed_container_is_named_without_its_slash() -> None:
    listed = LabelledContainer.from_listing({"Id": "abc", "Names": ["/fnplane-i1"], "Labels": {"a": "b"}})
    assert listed == LabelledContainer(id="abc", name="fnplane-i1", labels={"a": "b"})
    assert LabelledContainer.from_listing({"Id": "abc"}).name == ""


def test_no_runtime_answering_is_a_clear_start_failure(tmp_path: Path) -> None:
    backend = ContainerBackend(
        state_dir=tmp_path, agent_id="a", stop_grace_s=1.0, host=f"unix://{tmp_path}/none.sock"
    )
    with pytest.raises(ContainerRuntimeError, match="no container runtime answers at unix://"):
        asyncio.run(backend.connect())


class _RegistryRecorder(http.server.BaseHTTPRequestHandler):
    """A stand-in for a Docker daemon (outside the project): no image here, every pull refused by the
    "registry", each pull's X-Registry-Auth header kept."""

    protocol_version = "HTTP/1.1"
    pulls: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        if self.path.endswith("/_ping"):
            self._answer(200, b"OK", "text/plain")
        elif self.path.endswith("/version"):
            self._answer(200, json.dumps({"ApiVersion": "1.41", "MinAPIVersion": "1.24"}).encode())
        else:  # /images/<name>/json
            self._answer(404, json.dumps({"message": "no such image"}).encode())

    def do_POST(self) -> None:
        self.pulls.append(self.headers.get("X-Registry-Auth"))
        # a failed pull is an HTTP 200 with an error line in its progress stream, one chunk a line
        progress = [b'{"status":"Pulling"}\n', b'{"error":"denied","errorDetail":{"message":"denied: no"}}\n']
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in progress:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.write(b"0\r\n\r\n")

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_registry_credential_of_the_assignment_reaches_the_pull(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RegistryRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    backend = ContainerBackend(
        state_dir=tmp_path, agent_id="a", stop_grace_s=1.0, host=f"tcp://127.0.0.1:{server.server_address[1]}"
    )
    login = {"username": "$oauthtoken", "password": "nvapi-secret", "serveraddress": "nvcr.io"}
    with_login = make_assignment(
        "", containerImage="nvcr.io/team/model:1", registryAuth=RegistryAuth.model_validate(login)
    )
    without = make_assignment("", containerImage="nvcr.io/team/model:1")

    async def pull_both() -> list[BackendError]:
        await backend.connect()
        failures = []
        for assignment in (with_login, without):
            with pytest.raises(BackendError) as failure:
                await backend.start(assignment)
            failures.append(failure.value)
        await backend.aclose()
        return failures

    try:
        failures = asyncio.run(pull_both())
    finally:
        server.shutdown()
        server.server_close()
    assert [f.cause for f in failures] == ["image-pull-issues", "image-pull-issues"]
    assert failures[0].detail == "cannot pull image nvcr.io/team/model:1: denied: no"
    sent, none = _RegistryRecorder.pulls
    assert sent is not None and json.loads(base64.urlsafe_b64decode(sent + "==")) == login
    # without a credential of ours, nothing of the agent's (its user has no docker login here)
    assert none is None
