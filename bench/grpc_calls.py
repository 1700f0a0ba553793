"""gRPC benchmarks: examples/grpc_echo.py through `fnplane up`'s gRPC proxy and called directly (a second
copy of it on its own port), in the same run, with the CPU each process spends per call (bench/cpu.py).

    unary 32 B, unary 2 KiB    1 client, sequential calls on one channel: p50 / p90 / p99
    server stream              one call answered by 100 messages of 2 KiB (x-count), streams one by one
    32 sessions                32 channels (each its own connection, so its own session), each
                               calling unary 2 KiB in a loop: calls/s

Each scenario opens its own channel(s): the first call on a channel is the "session open" (through the
proxy it opens the session: admission, the version's queue, a worker taking it), timed on its own and
left out of the statistics like the warm-up calls after it. CPU is read around the measured calls only.
The clients are grpc.aio in this process; its own CPU per call is reported too, since on this 2-CPU host
it competes with the processes measured.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.cpu import FUNCTION, CpuMeter, cpu_row
from bench.platform import REPO, Platform, free_port

ECHO = REPO / "examples" / "grpc_echo.py"
UNARY = "/fnplane.examples.Echo/Unary"
SERVER_STREAM = "/fnplane.examples.Echo/ServerStream"
DURATION_S = float(os.environ.get("FNPLANE_BENCH_GRPC_DURATION_S", "3"))
WARMUP_CALLS = 50
STREAM_MESSAGES = 100
SESSIONS = 32
KiB = 1024

LATENCY_HEAD = (
    "| scenario | clients | session open ms, direct / proxy | direct calls/s | proxy calls/s | ratio "
    "| direct p50 / p90 / p99 ms | proxy p50 / p90 / p99 ms | added p50 / p99 ms |"
)
STREAM_HEAD = (
    "| scenario | session open ms, direct / proxy | direct msgs/s | proxy msgs/s | ratio "
    "| direct ms per stream (p50) | proxy ms per stream (p50) | added ms per stream |"
)
CPU_HEAD = (
    "| scenario | clients | `fnplane up` | worker | nats-server | platform total | function "
    "| function, direct call | client (bench), direct / proxy |"
)


@dataclass
class Run:
    """One side (direct or proxy) of one scenario."""

    open_ms: list[float]  # the first call of each channel
    latencies_ms: list[float]  # per call, or per stream
    seconds: float  # the measured window
    cpu: dict[str, float]  # us per call (or message) per component
    client_us: float  # this process's CPU per call (or message)

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(int(len(ordered) * q), len(ordered) - 1)]

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds


class Side:
    """Where one side's calls go: a target, its metadata and the CPU meter over its processes."""

    def __init__(self, target: str, metadata: tuple[tuple[str, str], ...], meter: CpuMeter) -> None:
        self.target = target
        self.metadata = metadata
        self.meter = meter

    async def channel(self) -> tuple[grpc.aio.Channel, float]:
        """A connected channel and the time of its first call (the session open)."""
        channel = grpc.aio.insecure_channel(self.target)
        await asyncio.wait_for(channel.channel_ready(), 10)
        t = time.perf_counter()
        await channel.unary_unary(UNARY)(b"open", metadata=self.metadata, timeout=60)
        return channel, (time.perf_counter() - t) * 1000

    async def measured(self, work: Callable[[], Awaitable[tuple[list[float], int]]]) -> tuple[Any, ...]:
        """Run `work` (-> latencies, calls or messages) between two CPU readings."""
        me = psutil.Process()
        before, mine = self.meter.read(), me.cpu_times()
        t = time.perf_counter()
        latencies, count = await work()
        seconds = time.perf_counter() - t
        cpu = self.meter.since(before).per_request_us(count)
        after = me.cpu_times()
        client_us = (after.user + after.system - mine.user - mine.system) * 1e6 / max(count, 1)
        return latencies, seconds, cpu, client_us

    async def unary(self, body: bytes) -> Run:
        channel, open_ms = await self.channel()
        async with channel:
            call = channel.unary_unary(UNARY)
            for _ in range(WARMUP_CALLS):
                await call(body, metadata=self.metadata, timeout=10)

            async def work() -> tuple[list[float], int]:
                latencies = await _loop(call, body, self.metadata, time.monotonic() + DURATION_S)
                return latencies, len(latencies)

            latencies, seconds, cpu, client_us = await self.measured(work)
        return Run([open_ms], latencies, seconds, cpu, client_us)

    async def stream(self, body: bytes) -> Run:
        channel, open_ms = await self.channel()
        metadata = (*self.metadata, ("x-count", str(STREAM_MESSAGES)))
        async with channel:
            call = channel.unary_stream(SERVER_STREAM)

            async def one() -> float:
                t = time.perf_counter()
                got = [m async for m in call(body, metadata=metadata, timeout=30)]
                assert len(got) == STREAM_MESSAGES and got[-1] == body, len(got)
                return (time.perf_counter() - t) * 1000

            await one()  # warm-up

            async def work() -> tuple[list[float], int]:
                stop = time.monotonic() + DURATION_S
                latencies = [await one()]
                while time.monotonic() < stop:
                    latencies.append(await one())
                return latencies, len(latencies) * STREAM_MESSAGES

            latencies, seconds, cpu, client_us = await self.measured(work)
        return Run([open_ms], latencies, seconds, cpu, client_us)

    async def sessions(self, body: bytes, clients: int) -> Run:
        opened = await asyncio.gather(*(self.channel() for _ in range(clients)))
        channels = [c for c, _ in opened]
        try:
            calls = [c.unary_unary(UNARY) for c in channels]
            for _ in range(WARMUP_CALLS // 10):
                await asyncio.gather(*(call(body, metadata=self.metadata, timeout=10) for call in calls))

            async def work() -> tuple[list[float], int]:
                stop = time.monotonic() + DURATION_S
                each = await asyncio.gather(*(_loop(call, body, self.metadata, stop) for call in calls))
                latencies = [ms for one in each for ms in one]
                return latencies, len(latencies)

            latencies, seconds, cpu, client_us = await self.measured(work)
        finally:
            await asyncio.gather(*(c.close() for c in channels))
        return Run([ms for _, ms in opened], latencies, seconds, cpu, client_us)


async def _loop(
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes],
    body: bytes,
    metadata: tuple[tuple[str, str], ...],
    stop: float,
) -> list[float]:
    latencies = []
    while time.monotonic() < stop:
        t = time.perf_counter()
        reply = await call(body, metadata=metadata, timeout=10)
        latencies.append((time.perf_counter() - t) * 1000)
        assert reply == body
    return latencies


async def _serving(target: str, timeout_s: float = 30) -> None:
    """Wait until the direct copy reports SERVING on the health service."""
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)


@dataclass
class Results:
    rows: list[str]
    stream_row: str
    cpu_rows: list[str]
    notes: list[str]


def measure(p: Platform, meter: CpuMeter) -> Results:
    """Every gRPC scenario on a running platform, direct first, then through the proxy."""
    fn = p.deploy(
        "bench-grpc-echo",
        "/grpc",
        concurrency=2 * SESSIONS,  # the 32 sessions, with room for ones still closing
        function={
            "inferencePort": 8001,
            "containerImage": "example/grpc-echo:1",
            "containerArgs": f"{sys.executable} {ECHO}",
            "health": {
                "protocol": "gRPC",
                "port": 8001,
                "uri": "/",
                "timeout": "PT10S",
                "expectedStatusCode": 200,
            },
        },
    )
    port = free_port()
    direct_proc = subprocess.Popen(
        [sys.executable, str(ECHO)], cwd=REPO, env=dict(os.environ, PORT=str(port)), stdout=subprocess.DEVNULL
    )
    try:
        before = psutil.cpu_times()
        results = asyncio.run(_measure(p, fn, meter, port, direct_proc.pid))
        # a shared VM: the CPU time the hypervisor gave to others moves every figure
        after = psutil.cpu_times()
        total = sum(after) - sum(before)
        results.notes.append(f"* host CPU steal during the run: {(after.steal - before.steal) / total:.0%}")
        return results
    finally:
        direct_proc.terminate()
        direct_proc.wait(timeout=10)


async def _measure(p: Platform, fn: dict[str, Any], meter: CpuMeter, port: int, direct_pid: int) -> Results:
    direct = Side(f"127.0.0.1:{port}", (), CpuMeter(direct_pid, FUNCTION))
    proxy = Side(p.grpc_target, (("authorization", f"Bearer {p.key}"), ("function-id", fn["id"])), meter)
    await _serving(direct.target)
    channel, _ = await proxy.channel()  # the first session waits for the worker to be ready
    await channel.close()
    rows, cpu_rows, notes = [], [], []
    small, two_k = b"x" * 32, b"x" * (2 * KiB)
    for name, body in (("unary, 32 B", small), ("unary, 2 KiB", two_k)):
        d, g = await direct.unary(body), await proxy.unary(body)
        rows.append(_latency_row(name, 1, d, g))
        cpu_rows.append(_cpu_row(name, 1, d, g))
        print(rows[-1], cpu_rows[-1], sep="\n", flush=True)
        if body is small:
            added = g.pct(0.5) - d.pct(0.5)
            notes.append(
                f"* added latency per unary call within a session (32 B, 1 client): **{added:+.2f} ms "
                f"p50** (design target <= 1 ms: {'met' if added <= 1 else 'NOT met'}), "
                f"{g.pct(0.99) - d.pct(0.99):+.2f} ms p99"
            )
    d, g = await direct.stream(two_k), await proxy.stream(two_k)
    stream_row = (
        f"| server stream, {STREAM_MESSAGES} x 2 KiB | {d.open_ms[0]:.1f} / {g.open_ms[0]:.1f} | "
        f"{d.rate * STREAM_MESSAGES:,.0f} | {g.rate * STREAM_MESSAGES:,.0f} | {g.rate / d.rate:.0%} | "
        f"{d.pct(0.5):.2f} | {g.pct(0.5):.2f} | {g.pct(0.5) - d.pct(0.5):+.2f} |"
    )
    cpu_rows.append(_cpu_row(f"server stream, per message ({STREAM_MESSAGES} x 2 KiB)", 1, d, g))
    print(stream_row, cpu_rows[-1], sep="\n", flush=True)
    d, g = await direct.sessions(two_k, SESSIONS), await proxy.sessions(two_k, SESSIONS)
    name = f"{SESSIONS} sessions, unary 2 KiB"
    rows.append(_latency_row(name, SESSIONS, d, g))
    cpu_rows.append(_cpu_row(name, SESSIONS, d, g))
    print(rows[-1], cpu_rows[-1], sep="\n", flush=True)
    cpu = g.cpu
    notes.append(
        f"* {SESSIONS} concurrent sessions: **{g.rate:,.0f} calls/s** through the proxy, "
        f"{g.rate / d.rate:.0%} of the direct call's {d.rate:,.0f}; platform CPU **{cpu['platform']:,.0f} us "
        f"per call** (`fnplane up` {cpu['gateway']:,.0f}, worker {cpu['worker']:,.0f}, nats-server "
        f"{cpu['nats']:,.0f}; the function {cpu['function']:,.0f}, {d.cpu['function']:,.0f} called directly)"
    )
    notes.append(
        f"* session open (a new connection's first call): {statistics.median(g.open_ms):.1f} ms median "
        f"over {SESSIONS} opened at once (max {max(g.open_ms):.1f}); "
        f"{statistics.median(d.open_ms):.1f} ms for the first call of a direct channel"
    )
    return Results(rows, stream_row, cpu_rows, notes)


def _latency_row(name: str, clients: int, d: Run, g: Run) -> str:
    def opened(r: Run) -> str:
        return f"{statistics.median(r.open_ms):.1f}"

    def pcts(r: Run) -> str:
        return " / ".join(f"{r.pct(q):.2f}" for q in (0.5, 0.9, 0.99))

    return (
        f"| {name} | {clients} | {opened(d)} / {opened(g)} | {d.rate:,.0f} | {g.rate:,.0f} | "
        f"{g.rate / d.rate:.0%} | {pcts(d)} | {pcts(g)} | "
        f"{g.pct(0.5) - d.pct(0.5):+.2f} / {g.pct(0.99) - d.pct(0.99):+.2f} |"
    )


def _cpu_row(name: str, clients: int, d: Run, g: Run) -> str:
    return cpu_row(name, clients, g.cpu, d.cpu) + f" {d.client_us:,.0f} / {g.client_us:,.0f} |"


def section(results: Results, when: str, machine: str, command: str) -> str:
    """The "gRPC" section of docs/benchmarks.md."""
    r = results
    return f"""## gRPC

Written by `{command}` on {when} UTC.
Machine: {machine}.
Function `examples/grpc_echo.py` (grpcio aio, raw bytes) deployed with `maxRequestConcurrency`
{2 * SESSIONS}; the direct call is a second copy of it on its own port, measured in the same run just
before the proxy. Through the proxy: client -> the proxy's front (h2c) -> grpcio server -> NATS ->
worker -> function, and back over NATS. Clients are grpc.aio in the bench process, {DURATION_S:g} s per
point after {WARMUP_CALLS} warm-up calls (the session open, a new connection's first call, is timed
apart and left out).

{chr(10).join(r.notes)}

{LATENCY_HEAD}
| --- | ---: | --- | ---: | ---: | ---: | --- | --- | --- |
{chr(10).join(r.rows)}

{STREAM_HEAD}
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
{r.stream_row}

CPU per call (per message for the stream), us, as in "Platform CPU per request" above: `fnplane up`
(gRPC proxy, gateway, control plane, agent), the workers, nats-server, the deployed functions (the idle
HTTP ones too, when `make bench` ran them first); and the bench process itself (the gRPC client).

{CPU_HEAD}
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
{chr(10).join(r.cpu_rows)}
"""
