"""The fault suite's load and its faults (issue 14; docs/reliability.md "Faults").

`SteadyLoad` sends an open-loop steady mix of pexec, direct (Host-header) and SSE calls to both
gateways of a `MultiHost` while a fault runs in a thread beside it, and classifies every request:

    refused   the connection was refused by both gateways: never accepted (a client, or a load
              balancer, retries a refused connection on the other gateway first, as here)
    ok        answered 2xx with the right body (a 202 is followed by status polls through either
              gateway until the result; an SSE stream must end with all its events and [DONE])
    error     answered, but not with success: a status >= 400, a connection reset after the request
              was sent, an SSE stream cut short. The client knows at once; nothing waits for nothing
    lost      no answer within the request's window (`WINDOW_S`): what must never happen

`FAULTS` maps a fault's name to what it does to the platform, including bringing the part back (a
supervisor would); `recovery_s` is the time from the fault to the start of the last request that
did not succeed (0 when none failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psutil
from multihost import MultiHost

# a request gets this long for its final answer (pexec: its 202 polls included)
WINDOW_S = 60.0
# pexec waits this long before a 202 (NVCF-POLL-SECONDS)
POLL_S = 10
SSE_WORDS = "one two three four five six"


@dataclass
class Outcome:
    kind: str
    started: float
    result: str
    detail: str = ""


@dataclass
class FaultResult:
    fault: str
    outcomes: list[Outcome] = field(default_factory=list)
    fault_at: float = 0.0
    fault_s: float = 0.0

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    @property
    def accepted(self) -> int:
        return sum(1 for o in self.outcomes if o.result != "refused")

    @property
    def recovery_s(self) -> float:
        failed = [o.started for o in self.outcomes if o.result != "ok" and o.started >= self.fault_at - 1.0]
        return max(0.0, max(failed) - self.fault_at) if failed else 0.0

    def errors(self) -> str:
        kinds = Counter(f"{o.kind} {o.detail}" for o in self.outcomes if o.result in ("error", "lost"))
        return ", ".join(f"{n} x {what}" for what, n in kinds.most_common()) or "-"


class SteadyLoad:
    def __init__(self, hosts: MultiHost, echo_id: str, sse_id: str, rate_per_s: float = 6.0) -> None:
        self.hosts = hosts
        self.echo_id, self.sse_id = echo_id, sse_id
        self.rate_per_s = rate_per_s
        self.gateways = [hosts.gateway_url("c1"), hosts.gateway_url("c2")]

    async def run(
        self, name: str, fault: Callable[[], None], *, before_s: float = 4.0, after_s: float = 16.0
    ) -> FaultResult:
        result = FaultResult(name)
        timeout = httpx.Timeout(WINDOW_S, connect=5.0)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(headers=self.hosts.auth, timeout=timeout, limits=limits) as client:
            tasks: list[asyncio.Task[None]] = []
            kinds = itertools.cycle(["pexec", "direct", "pexec", "sse", "direct", "pexec"])
            first_gateway = itertools.cycle([0, 1])
            stop = asyncio.Event()

            async def schedule() -> None:
                start = time.monotonic()
                for i in itertools.count():
                    if stop.is_set():
                        return
                    kind = next(kinds)
                    tasks.append(asyncio.create_task(self._one(client, kind, i, next(first_gateway), result)))
                    # open loop: the next request at its time, whatever the answers do
                    await asyncio.sleep(max(0.0, start + (i + 1) / self.rate_per_s - time.monotonic()))

            scheduler = asyncio.create_task(schedule())
            await asyncio.sleep(before_s)
            result.fault_at = time.monotonic()
            await asyncio.to_thread(fault)
            result.fault_s = time.monotonic() - result.fault_at
            await asyncio.sleep(after_s)
            stop.set()
            await scheduler
            await asyncio.gather(*tasks)
        return result

    async def _one(
        self, client: httpx.AsyncClient, kind: str, i: int, first: int, result: FaultResult
    ) -> None:
        started = time.monotonic()
        try:
            outcome = await asyncio.wait_for(self._call(client, kind, i, first), WINDOW_S)
        except TimeoutError:
            outcome = Outcome(kind, 0.0, "lost", "no answer in the window")
        outcome.started = started
        result.outcomes.append(outcome)

    async def _call(self, client: httpx.AsyncClient, kind: str, i: int, first: int) -> Outcome:
        order = [self.gateways[first], self.gateways[1 - first]]
        for gateway in order:
            try:
                return await self._send(client, gateway, kind, i)
            except httpx.ConnectError:
                continue  # refused: nothing was sent; the other gateway
            except (httpx.TransportError, httpx.StreamError) as error:
                return Outcome(kind, 0.0, "error", type(error).__name__)
        return Outcome(kind, 0.0, "refused", "both gateways refused")

    async def _send(self, client: httpx.AsyncClient, gateway: str, kind: str, i: int) -> Outcome:
        if kind == "direct":
            response = await client.post(
                f"{gateway}/fault/direct?i={i}", json={"i": i},
                headers={"Host": f"{self.echo_id}.invocation.localhost"},
            )  # fmt: skip
            ok = response.status_code == 200 and response.json().get("echo") == {"i": i}
            return Outcome(kind, 0.0, "ok" if ok else "error", str(response.status_code))
        if kind == "sse":
            return await self._stream(client, gateway, i)
        response = await client.post(
            f"{gateway}/v2/nvcf/pexec/functions/{self.echo_id}", json={"i": i},
            headers={"NVCF-POLL-SECONDS": str(POLL_S)},
        )  # fmt: skip
        polls = itertools.cycle(self.gateways)
        while response.status_code == 202:
            request_id = response.headers["NVCF-REQID"]
            poll_at = next(polls)
            with contextlib.suppress(httpx.ConnectError):
                response = await client.get(
                    f"{poll_at}/v2/nvcf/pexec/status/{request_id}", headers={"NVCF-POLL-SECONDS": str(POLL_S)}
                )
        ok = response.status_code == 200 and response.json().get("echo") == {"i": i}
        return Outcome("pexec", 0.0, "ok" if ok else "error", str(response.status_code))

    async def _stream(self, client: httpx.AsyncClient, gateway: str, i: int) -> Outcome:
        events: list[str] = []
        async with client.stream(
            "POST", f"{gateway}/v2/nvcf/pexec/functions/{self.sse_id}",
            json={"prompt": SSE_WORDS, "interval_s": 0.05}, headers={"Accept": "text/event-stream"},
        ) as response:  # fmt: skip
            if response.status_code != 200:
                return Outcome("sse", 0.0, "error", str(response.status_code))
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    events.append(line[5:].strip())
        words = [json.loads(e)["token"] for e in events if e != "[DONE]"]
        complete = words == SSE_WORDS.split() and events[-1:] == ["[DONE]"]
        return Outcome("sse", 0.0, "ok" if complete else "error", "200" if complete else "stream cut short")


# --- the faults --------------------------------------------------------------------------------------


def _processes_on(hosts: MultiHost, host: str, marker: str) -> list[psutil.Process]:
    found = []
    for pid in hosts.net.pids(host):
        try:
            process = psutil.Process(pid)
            cmdline = process.cmdline()
        except psutil.NoSuchProcess:
            continue
        if cmdline and "bwrap" not in cmdline[0] and any(marker in part for part in cmdline):
            found.append(process)
    return found


def kill_function(hosts: MultiHost) -> None:
    """kill -9 of one function process on a1 (its agent restarts it)."""
    _processes_on(hosts, "a1", "echo_server.py")[0].kill()


def kill_worker(hosts: MultiHost) -> None:
    """kill -9 of one worker on a1 (the agent replaces the instance)."""
    _processes_on(hosts, "a1", "fnplane.compute.worker")[0].kill()


def kill_agent(hosts: MultiHost) -> None:
    """kill -9 of a1's agent alone (its workers are orphaned), then a new agent on a1."""
    os.kill(hosts.roles["agent-a1"].process.pid, signal.SIGKILL)
    time.sleep(2.0)
    hosts.start_role("agent-a1")


def kill_gateway(hosts: MultiHost) -> None:
    """kill -9 of c1's gateway; started again 5 s later."""
    hosts.kill_role("gateway-c1")
    time.sleep(5.0)
    hosts.start_role("gateway-c1")
    hosts.wait_healthy("gateway-c1")


def kill_control(hosts: MultiHost) -> None:
    """kill -9 of the control replica holding the lease; started again 5 s later."""
    holder = next(
        host for host in ("c1", "c2")
        if httpx.get(f"{hosts.control_url(host)}/health", timeout=5).json().get("lease") == "held"
    )  # fmt: skip
    hosts.kill_role(f"control-{holder}")
    time.sleep(5.0)
    hosts.start_role(f"control-{holder}")
    hosts.wait_healthy(f"control-{holder}")


def kill_nats_node(hosts: MultiHost) -> None:
    """kill -9 of c2's NATS node (one of three; every stream has 3 replicas); started again 5 s later."""
    hosts.kill_nats("c2")
    time.sleep(5.0)
    hosts.start_nats("c2")


def restart_postgres(hosts: MultiHost) -> None:
    """A restart of PostgreSQL (fast shutdown: every connection closed, then up again)."""
    assert hosts.postgres is not None
    hosts.postgres.restart()


def cut_link(hosts: MultiHost) -> None:
    """a1's link cut for 10 s (its agent, workers, functions and NATS node cut off), then back."""
    hosts.net.cut("a1")
    time.sleep(10.0)
    hosts.net.mend("a1")


FAULTS: dict[str, Callable[[MultiHost], None]] = {
    "kill -9 a function process": kill_function,
    "kill -9 a worker": kill_worker,
    "kill -9 an agent": kill_agent,
    "kill -9 a gateway": kill_gateway,
    "kill -9 the control replica holding the lease": kill_control,
    "kill -9 one NATS node of three": kill_nats_node,
    "restart PostgreSQL": restart_postgres,
    "cut an agent host's link for 10 s": cut_link,
}


def table(results: list[FaultResult]) -> list[str]:
    columns = (
        "fault", "accepted", "2xx", "answered with an error", "lost", "refused (not accepted)",
        "fault took", "service back within", "the errors",
    )  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * 7 + " --- |"]
    for r in results:
        lines.append(
            f"| {r.fault} | {r.accepted} | {r.count('ok')} | {r.count('error')} | {r.count('lost')} | "
            f"{r.count('refused')} | {r.fault_s:.1f} s | {r.recovery_s:.1f} s | {r.errors()} |"
        )
    return lines
