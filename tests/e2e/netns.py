"""Hosts on one machine for the multi-host tests: network namespaces on a bridge (root only).

    with Network(["c1", "c2", "a1", "a2"]) as net:
        net.address("c1")                    # 10.213.N.11, the host's one address
        net.popen("c1", [...], ...)          # a process "on" the host (ip netns exec; the same pid)
        net.cut("a1"); net.mend("a1")        # the host's cable pulled and plugged back

Each host is a namespace with its loopback and one veth to a bridge in the machine's namespace; the
bridge has the address `net.gateway` (.1), where the machine's own services are reached through
forwarders (`Forwarder`). Names carry a random tag, so two test runs never share a bridge; `close()`
deletes every namespace, veth and the bridge it made.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

FORWARD_SCRIPT = Path(__file__).with_name("tcp_forward.py")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def _free_subnet() -> int:
    used = ip("-4", "-o", "addr").stdout
    for _ in range(64):
        third = secrets.randbelow(250) + 1
        if f"10.213.{third}." not in used:
            return third
    raise RuntimeError("no free 10.213.x.0/24 subnet")


class Network:
    def __init__(self, hosts: list[str]) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the multi-host tests make network namespaces: run them as root")
        self.tag = secrets.token_hex(3)
        self.subnet = _free_subnet()
        self.gateway = f"10.213.{self.subnet}.1"
        self.bridge = f"fb{self.tag}"
        self.hosts = {name: i + 11 for i, name in enumerate(hosts)}
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def namespace(self, host: str) -> str:
        return f"fnp{self.tag}-{host}"

    def address(self, host: str) -> str:
        return f"10.213.{self.subnet}.{self.hosts[host]}"

    def _veth(self, host: str) -> str:
        return f"fv{self.tag}{self.hosts[host]}"

    def _build(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(f"link:{self.bridge}")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in self.hosts:
            ns, veth = self.namespace(host), self._veth(host)
            ip("netns", "add", ns)
            self._made.append(f"netns:{ns}")
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._made.append(f"link:{veth}")
            ip("link", "set", veth, "master", self.bridge)
            ip("link", "set", veth, "up")
            ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "route", "add", "default", "via", self.gateway)

    def command(self, host: str, argv: list[str]) -> list[str]:
        """`argv` run on `host`: `ip netns exec` enters the namespace and execs it (same pid)."""
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def popen(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(host, argv), **kwargs)

    def pids(self, host: str) -> list[int]:
        """Every process in the host's network namespace."""
        return [int(pid) for pid in ip("netns", "pids", self.namespace(host)).stdout.split()]

    def cut(self, host: str) -> None:
        """The host's link goes down: it reaches nobody and nobody reaches it (its processes run on)."""
        ip("link", "set", self._veth(host), "down")

    def mend(self, host: str) -> None:
        ip("link", "set", self._veth(host), "up")

    def close(self) -> None:
        for item in reversed(self._made):
            kind, name = item.split(":", 1)
            if kind == "netns":
                ip("netns", "del", name, check=False)
            else:
                ip("link", "del", name, check=False)
        self._made.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Forwarder:
    """A TCP forwarder in the machine's namespace (its own process): `listen` -> `target`, so the
    hosts reach a service that listens on the machine's loopback only (PostgreSQL here)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(FORWARD_SCRIPT), listen[0], str(listen[1]), target[0], str(target[1])],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()  # the script says "ready" once it listens
        if b"ready" not in ready:
            self.close()
            raise RuntimeError(f"forwarder {listen} -> {target} did not start")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
