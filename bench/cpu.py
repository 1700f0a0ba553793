"""CPU per request of each process on the request path, from /proc (user + system time).

    meter = CpuMeter(up_pid)            # `fnplane up` and everything under it
    before = meter.read()
    result = load(...)                  # the measured load
    us = meter.since(before).per_request_us(result.requests)   # {"gateway": ..., "platform": ...}

`read()` walks the root process and all its descendants and files each under a component: the root is
the gateway (`fnplane up` also holds the control plane and the agent, whose idle work is included), the
embedded `nats-server`, every `python -m fnplane.compute.worker` (by command line), and anything else
under it is a function process. The same meter on the bench's own direct-call server, with the root
filed as the function, gives the direct call's figure. Processes are keyed by pid and start time, so a
reused pid is a new process: one that started during the load counts from zero, one that vanished
counts up to its last reading. psutil's `cpu_times()` reads /proc/<pid>/stat (utime and stime in clock
ticks, `SC_CLK_TCK`, usually 100 per second), so a figure over N requests is good to 10 ms / N (about
1-2 us per request for the bench's small-request points).
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

GATEWAY, WORKER, NATS, FUNCTION = "gateway", "worker", "nats", "function"
COMPONENTS = (GATEWAY, WORKER, NATS, FUNCTION)
PLATFORM = (GATEWAY, WORKER, NATS)

# (pid, create time) -> (component, user + system seconds)
Reading = dict[tuple[int, float], tuple[str, float]]


def component_of(process: psutil.Process) -> str:
    """The component of a descendant of `fnplane up` (the root itself is classified by the caller)."""
    if process.name().startswith("nats-server"):
        return NATS
    if "fnplane.compute.worker" in process.cmdline():
        return WORKER
    return FUNCTION


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds (user + system) per component over one or more measured loads."""

    seconds: dict[str, float]

    def __add__(self, other: CpuUse) -> CpuUse:
        return CpuUse({c: self.seconds.get(c, 0.0) + other.seconds.get(c, 0.0) for c in COMPONENTS})

    def per_request_us(self, requests: int) -> dict[str, float]:
        """Microseconds per request per component (numerically ms per 1,000 requests), plus "platform"."""
        us = {c: self.seconds.get(c, 0.0) * 1e6 / max(requests, 1) for c in COMPONENTS}
        us["platform"] = sum(us[c] for c in PLATFORM)
        return us


class CpuMeter:
    def __init__(self, root_pid: int, root_component: str = GATEWAY) -> None:
        self.root = psutil.Process(root_pid)
        self.root_component = root_component

    def read(self) -> Reading:
        reading: Reading = {}
        try:
            tree = [(self.root, self.root_component)]
            tree += [(p, "") for p in self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return reading
        for process, component in tree:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    key = (process.pid, process.create_time())
                    reading[key] = (component or component_of(process), times.user + times.system)
            except psutil.Error:
                continue  # gone between the walk and the read: its last reading stands
        return reading

    def since(self, before: Reading) -> CpuUse:
        """Read again; the CPU used per component since `before`."""
        after = self.read()
        used = dict.fromkeys(COMPONENTS, 0.0)
        for key in before.keys() | after.keys():
            component, start = before.get(key, ("", 0.0))
            component, end = after.get(key, (component, start))
            used[component] += end - start
        return CpuUse(used)


def cpu_row(name: str, clients: int, gateway: dict[str, float], direct: dict[str, float] | None) -> str:
    """A row of the CPU tables in docs/benchmarks.md: us per request per component, through the
    platform (`gateway`, from `per_request_us`) and for the direct call's function."""
    cells = [gateway[c] for c in (GATEWAY, WORKER, NATS, "platform", FUNCTION)]
    direct_cell = f"{direct[FUNCTION]:,.0f}" if direct is not None else "-"
    return f"| {name} | {clients} | " + " | ".join(f"{v:,.0f}" for v in cells) + f" | {direct_cell} |"
