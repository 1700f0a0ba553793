"""A container with CDI devices on a Podman older than 5.4, created through libpod's own API.

Podman's Docker-compatible API ignores a CDI device request (`{"Driver": "cdi"}`) before Podman 5.4 and
turns CDI names in `HostConfig.Devices` into paths ("stat nvidia.com/gpu=0: no such file"), while its
libpod API (`POST /v<version>/libpod/containers/create`) has always taken them as `devices` (what
`podman run --device nvidia.com/gpu=0` sends). Only such a container is created there, from the very
Engine API body `container_config` builds, translated field by field; everything else about it (start,
wait, logs, stop, removal) goes through the compatible API as any container's does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# the CFS period Podman and Docker use for NanoCpus (100 ms)
_CPU_PERIOD_US = 100_000
# the Engine API fields `libpod_spec` translates; any other is an error rather than silently dropped
_CONFIG_FIELDS = {"Env", "Labels", "ExposedPorts", "Tty", "Cmd", "HostConfig"}
_HOST_FIELDS = {
    "NetworkMode",
    "LogConfig",
    "PortBindings",
    "Mounts",
    "CapDrop",
    "CapAdd",
    "SecurityOpt",
    "Privileged",
    "Init",
    "NanoCpus",
    "Memory",
    "MemorySwap",
    "DeviceRequests",
}
# the first Podman whose compatible API passes a CDI device request on (podman PR #25171)
CDI_COMPAT_SINCE = (5, 4)


def podman_version(version: Mapping[str, Any]) -> tuple[int, int] | None:
    """(major, minor) of the Podman behind `GET /version`; None when it is not Podman."""
    for component in version.get("Components") or ():
        if isinstance(component, Mapping) and component.get("Name") == "Podman Engine":
            try:
                major, minor = str(component.get("Version", "")).split(".")[:2]
                return int(major), int(minor)
            except ValueError:
                return None
    return None


def cdi_devices(config: Mapping[str, Any]) -> list[str]:
    """The CDI device names an Engine API body requests."""
    requests = config.get("HostConfig", {}).get("DeviceRequests") or []
    return [name for r in requests if r.get("Driver") == "cdi" for name in r.get("DeviceIDs") or []]


def needs_libpod(config: Mapping[str, Any], podman: tuple[int, int] | None) -> bool:
    """Whether this container must be created through libpod: it has CDI devices and the runtime is a
    Podman whose compatible API would drop them."""
    return podman is not None and podman < CDI_COMPAT_SINCE and bool(cdi_devices(config))


def libpod_spec(image: str, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """libpod's SpecGenerator for the Engine API body `config` (ValueError on a field it cannot say)."""
    unknown = set(config) - _CONFIG_FIELDS
    host: Mapping[str, Any] = config.get("HostConfig", {})
    unknown |= {f"HostConfig.{key}" for key in set(host) - _HOST_FIELDS}
    requests = host.get("DeviceRequests") or []
    if unknown or any(r.get("Driver") != "cdi" for r in requests):
        raise ValueError(f"no libpod translation for {sorted(unknown) or 'a non-CDI device request'}")
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "env": dict(item.split("=", 1) for item in config.get("Env", [])),
        "labels": dict(config.get("Labels", {})),
        "terminal": bool(config.get("Tty", False)),
        # a bridge: the network NetworkMode names, else the default one (the compatible API's, rootful)
        "netns": {"nsmode": "bridge"},
        "portmappings": [
            {
                "container_port": int(port.split("/")[0]),
                "protocol": port.split("/")[1] if "/" in port else "tcp",
                "host_ip": binding.get("HostIp", ""),
                "host_port": int(binding.get("HostPort") or 0),
            }
            for port, bindings in (host.get("PortBindings") or {}).items()
            for binding in bindings
        ],
        "mounts": [
            {
                "type": mount["Type"],
                "source": mount["Source"],
                "destination": mount["Target"],
                "options": ["rbind", "ro" if mount.get("ReadOnly") else "rw"],
            }
            for mount in host.get("Mounts") or []
        ],
        "cap_drop": list(host.get("CapDrop") or []),
        "cap_add": list(host.get("CapAdd") or []),
        "no_new_privileges": "no-new-privileges" in (host.get("SecurityOpt") or []),
        "privileged": bool(host.get("Privileged", False)),
        "init": bool(host.get("Init", False)),
        "devices": [{"path": device} for device in cdi_devices(config)],
    }
    network = host.get("NetworkMode")
    if network and network not in ("default", "bridge"):
        # libpod 4.x spells this field with a capital, unlike its neighbours
        spec["Networks"] = {network: {}}
    log_config = host.get("LogConfig")
    if log_config:
        options = log_config.get("Config") or {}
        # libpod bounds its k8s-file (which takes the name json-file) by size only: no max-file
        spec["log_configuration"] = {
            "driver": log_config.get("Type") or "json-file",
            **({"size": int(options["max-size"])} if "max-size" in options else {}),
        }
    if config.get("Cmd"):
        # arguments replace the image's CMD and keep its ENTRYPOINT, as `Cmd` does
        spec["command"] = list(config["Cmd"])
    limits: dict[str, Any] = {}
    if host.get("NanoCpus"):
        limits["cpu"] = {"quota": host["NanoCpus"] * _CPU_PERIOD_US // 10**9, "period": _CPU_PERIOD_US}
    if host.get("Memory"):
        limits["memory"] = {"limit": host["Memory"], "swap": host.get("MemorySwap", host["Memory"])}
    if limits:
        spec["resource_limits"] = limits
    return spec
