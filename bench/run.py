"""`make bench`: invocation benchmarks through a real `fnplane up`, each against the direct call in the
same run, with the CPU each process spends per request (bench/cpu.py), written to docs/benchmarks.md
(the hand-written sections named in KEPT_SECTIONS are kept as they are).

Scenarios mirror NVCF's load tests (reference/invocation.md 8.3-8.7): small echo at 1 and 32 clients,
4 KiB responses, 2 MB requests, 10 MB responses via 302, SSE at 500-2,500 events/s, 1,000 held long polls;
then the gRPC scenarios (bench/grpc_calls.py). `python -m bench.run --grpc` runs only those and rewrites only
the doc's gRPC section.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as pyplatform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench import grpc_calls as grpc_bench
from bench import loadgen
from bench.cpu import FUNCTION, CpuMeter, CpuUse, cpu_row
from bench.platform import REPO, Platform

DOC = REPO / "docs" / "benchmarks.md"
TABLE_HEAD = (
    "| scenario | clients | direct rps | gateway rps | ratio | direct p50 / p99 ms | gateway p50 / p99 ms "
    "| added p50 / p99 ms | gateway errors |"
)
CPU_TABLE_HEAD = (
    "| scenario | clients | gateway process | worker | nats-server | platform total | function "
    "| function, direct call |"
)
DURATION_S = int(os.environ.get("FNPLANE_BENCH_DURATION_S", "8"))
IDLE_S = 5  # the platform's idle CPU is read over this long (clock ticks are 10 ms)
MiB = 1024 * 1024
KEPT_SECTIONS = (
    "What we changed on the request path and what it bought",
    "CPU per request before the second edition of the request path",
    "Cold start",
    "gRPC: where the time goes",
    "Issues 10 and 11: same-run A/B of the HTTP path, 1ad1b05 (before) → e656aab (after)",
    "Issues 8 and 9: same-run A/B, 61cbc3c (before) → 3f8ce52 (after)",
    "Issues 12 and 13: same-run A/B of the HTTP path, d2a9446 (before) → main at 19:30 UTC (after)",
    "Issue 14 and the telemetry cut: same-run A/B of the HTTP path, d842f9c (before) → a852378 (after)",
    "Telemetry CPU: same-run A/B",
    "What lands with stop 18: same-run A/B of the HTTP path, 1ad1b05 (landed) → c50800c (submitted)",
    "Stop 20: the gateway's grant cache and its own ack inbox, same-run A/Bs of the HTTP path",
    "Stop 21: the request path after the black-box fixes, same-run A/B",
    "Stop 22: the request path after the probe fixes, same-run A/B",
    "Stop 23: the request path after the undeploy, body-spool and body-wait changes, same-run A/B",
)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} CPUs ({model or pyplatform.machine()}), {mem:.0f} GiB RAM, "
        f"{pyplatform.system()} {pyplatform.release()}, Python {pyplatform.python_version()}"
    )


def now() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M}"


def load(url: str, connections: int, headers: dict[str, str], body: bytes) -> loadgen.LoadResult:
    if loadgen.have_wrk():
        return loadgen.wrk(url, connections=connections, duration_s=DURATION_S, headers=headers, body=body)
    return asyncio.run(
        loadgen.closed_loop(url, connections=connections, duration_s=DURATION_S, headers=headers, body=body)
    )


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.run")
    ap.add_argument("--grpc", action="store_true", help="only the gRPC scenarios (the doc's gRPC section)")
    if ap.parse_args().grpc:
        return grpc_only()
    p = Platform()
    rows: list[str] = []
    cpu_rows: list[str] = []
    notes: list[str] = []
    try:
        p.start()
        echo = p.deploy("bench-echo", "/supreme", concurrency=64)
        hold = p.deploy("bench-hold", "/slow", concurrency=1000)
        assert p.proc is not None and p.direct_proc is not None
        meter = CpuMeter(p.proc.pid)
        direct_meter = CpuMeter(p.direct_proc.pid, FUNCTION)
        before = meter.read()
        time.sleep(IDLE_S)
        idle_ms_per_s = sum(meter.since(before).seconds.values()) * 1000 / IDLE_S
        gw_headers = {
            **p.auth,
            "Host": p.host(echo),
            "Content-Type": "application/json",
            "NVCF-POLL-SECONDS": "300",
        }
        fn_headers = {"Content-Type": "application/json"}
        gw_url, fn_url = f"{p.url}/supreme", f"{p.direct_url}/supreme"

        def compare(
            name: str, connections: int, body: bytes
        ) -> tuple[loadgen.LoadResult, loadgen.LoadResult, dict[str, float]]:
            before = direct_meter.read()
            direct = load(fn_url, connections, fn_headers, body)
            direct_cpu = direct_meter.since(before).per_request_us(direct.requests)
            before = meter.read()
            gateway = load(gw_url, connections, gw_headers, body)
            gateway_cpu = meter.since(before).per_request_us(gateway.requests)
            cpu_rows.append(cpu_row(name, connections, gateway_cpu, direct_cpu))
            rows.append(
                f"| {name} | {connections} | {direct.rps:,.0f} | {gateway.rps:,.0f} | "
                f"{gateway.rps / direct.rps:.0%} | {direct.p50_ms:.2f} / {direct.p99_ms:.2f} | "
                f"{gateway.p50_ms:.2f} / {gateway.p99_ms:.2f} | "
                f"+{gateway.p50_ms - direct.p50_ms:.2f} / +{gateway.p99_ms - direct.p99_ms:.2f} | "
                f"{gateway.errors} |"
            )
            print(rows[-1], cpu_rows[-1], sep="\n", flush=True)
            return direct, gateway, gateway_cpu

        small = loadgen.json_body("hello", 1)
        d1, g1, _ = compare("small echo (32 B)", 1, small)
        d32, g32, cpu32 = compare("small echo (32 B)", 32, small)
        compare("4 KiB responses", 32, loadgen.json_body("x" * 32, 128))
        compare("2 MB requests", 8, loadgen.json_body("x" * 2_000_000, 0))

        # 10 MB responses: pexec answers 302 + signed Location (the k6 large-response test)
        big = loadgen.json_body("x" * 10_000, 1000)
        before = direct_meter.read()
        d_t, d_mb = asyncio.run(loadgen.large_results(fn_url, fn_headers, big, 4, 5, follow=False))
        direct_cpu = direct_meter.since(before).per_request_us(4 * 5)
        before = meter.read()
        g_t, g_mb = asyncio.run(
            loadgen.large_results(
                f"{p.url}/v2/nvcf/pexec/functions/{echo['id']}",
                {**p.auth, "Content-Type": "application/json"},
                big,
                4,
                5,
                follow=True,
            )
        )
        cpu_rows.append(
            cpu_row(
                "10 MB responses (pexec 302 + download)",
                4,
                meter.since(before).per_request_us(4 * 5),
                direct_cpu,
            )
        )
        large_row = (
            f"| 10 MB responses (pexec 302 + download) | 4 | {d_t * 1000:.0f} ms, {d_mb:.0f} MB/s | "
            f"{g_t * 1000:.0f} ms, {g_mb:.0f} MB/s | {d_mb and g_mb / d_mb:.0%} |"
        )
        print(large_row, flush=True)

        sse_rows = []
        sse_direct_cpu = sse_gateway_cpu = CpuUse({})
        sse_events = 0
        for rate in (500, 1000, 1500, 2000, 2500):
            events = rate  # one second of events per stream
            body = {"message": "x" * 128, "repeats": events, "delay": 1 / rate, "stream": True}
            before = direct_meter.read()
            direct = asyncio.run(loadgen.sse_rate(fn_url, {}, body, events))
            sse_direct_cpu += direct_meter.since(before)
            before = meter.read()
            gateway = asyncio.run(loadgen.sse_rate(gw_url, {**p.auth, "Host": p.host(echo)}, body, events))
            sse_gateway_cpu += meter.since(before)
            sse_events += events
            sse_rows.append(
                f"| {rate:,} | {direct:,.0f} ({direct / rate:.0%}) | {gateway:,.0f} ({gateway / rate:.0%}) |"
            )
            print(sse_rows[-1], flush=True)
        cpu_rows.append(
            cpu_row(
                "SSE, per event (500-2,500 events/s, one stream)",
                1,
                sse_gateway_cpu.per_request_us(sse_events),
                sse_direct_cpu.per_request_us(sse_events),
            )
        )

        up = psutil.Process(p.proc.pid)
        base_rss = up.memory_info().rss / MiB
        before = meter.read()
        ok, peak = asyncio.run(
            loadgen.hold_long_polls(
                f"{p.url}/v2/nvcf/pexec/functions/{hold['id']}",
                p.auth,
                {"seconds": 8},
                1000,
                lambda: up.memory_info().rss / MiB,
            )
        )
        cpu_rows.append(cpu_row("pexec call held 8 s", 1000, meter.since(before).per_request_us(ok), None))
        print(*cpu_rows[-2:], sep="\n", flush=True)
        hold_row = (
            f"| 1,000 concurrent pexec calls held 8 s | {ok} / 1000 | {base_rss:.0f} MiB | {peak:.0f} MiB |"
        )
        print(hold_row, flush=True)

        added_p50 = g1.p50_ms - d1.p50_ms
        added_p99 = g1.p99_ms - d1.p99_ms
        ratio32 = g32.rps / d32.rps
        notes.append(
            f"* added latency per small request (1 client): **+{added_p50:.2f} ms p50** (target <= 1 ms: "
            f"{'met' if added_p50 <= 1 else 'NOT met'}), **+{added_p99:.2f} ms p99** (target <= 5 ms: "
            f"{'met' if added_p99 <= 5 else 'NOT met'})"
        )
        notes.append(
            f"* throughput through the gateway at 32 clients: **{ratio32:.0%}** of the direct call "
            f"(target >= 50 %: {'met' if ratio32 >= 0.5 else 'NOT met'})"
        )
        notes.append(
            f"* platform CPU per small request at 32 clients: **{cpu32['platform']:.0f} us** (`fnplane up` "
            f"{cpu32['gateway']:.0f}, worker {cpu32['worker']:.0f}, nats-server {cpu32['nats']:.0f}; the "
            f"function {cpu32['function']:.0f}) (design target <= 220 us: "
            f"{'met' if cpu32['platform'] <= 220 else 'NOT met'})"
        )
        sse_2500 = float(re.search(r"\(([\d]+)%\) \|$", sse_rows[-1]).group(1))  # type: ignore[union-attr]
        notes.append(
            f"* SSE at 2,500 events/s: **{sse_2500:.0f} %** of the target rate through the gateway "
            f"(target >= 95 %: {'met' if sse_2500 >= 95 else 'NOT met'})"
        )
        notes.append(
            f"* 1,000 held long polls: `fnplane up` process (control plane + gateway + agent) peaked at "
            f"**{peak:.0f} MiB** RSS (target < 300 MB: {'met' if peak * 1.048576 < 300 else 'NOT met'})"
        )
        grpc_results = grpc_bench.measure(p, meter)
    finally:
        p.stop()
    grpc_section = grpc_bench.section(grpc_results, now(), machine(), "make bench")
    write_doc(rows, large_row, sse_rows, hold_row, notes, cpu_rows, idle_ms_per_s, grpc_section)


def grpc_only() -> None:
    p = Platform()
    try:
        p.start()
        assert p.proc is not None
        results = grpc_bench.measure(p, CpuMeter(p.proc.pid))
    finally:
        p.stop()
    section = grpc_bench.section(results, now(), machine(), "python -m bench.run --grpc")
    old = DOC.read_text() if DOC.exists() else ""
    # in place of the last gRPC section, else where `make bench` puts it: before the kept sections
    pattern = r"^## gRPC\n.*?(?=^## |\Z)"
    if re.search(pattern, old, flags=re.S | re.M):
        text = re.sub(pattern, lambda _: section + "\n", old, count=1, flags=re.S | re.M)
    else:
        kept = [m.start() for h in KEPT_SECTIONS if (m := re.search(rf"^## {re.escape(h)}", old, re.M))]
        at = min(kept, default=len(old))
        text = old[:at] + section + "\n" + old[at:]
    DOC.write_text(text.rstrip() + "\n")
    print(f"wrote the gRPC section of {DOC}")


def write_doc(
    rows: list[str],
    large_row: str,
    sse_rows: list[str],
    hold_row: str,
    notes: list[str],
    cpu_rows: list[str],
    idle_ms_per_s: float,
    grpc_section: str,
) -> None:
    old = DOC.read_text() if DOC.exists() else ""
    # hand-written sections survive a re-run: the cold-start numbers (bench/cold_start.py), the
    # history of what was changed on the request path and what it bought, and the CPU table it started from
    kept = ""
    for heading in KEPT_SECTIONS:
        pattern = rf"^## {re.escape(heading)}.*?(?=^## |\Z)"
        if (m := re.search(pattern, old, flags=re.S | re.M)) is not None:
            kept += m.group(0).rstrip() + "\n\n"
    generator = "wrk" if loadgen.have_wrk() else "an asyncio client (wrk not installed)"
    text = f"""# Benchmarks

Written by `make bench` (`python -m bench.run`) on {now()} UTC.
Machine: {machine()}. Everything (load generator, `fnplane up` with NATS, worker and function processes)
shares this machine, so absolute numbers are low; the ratios against the direct call, measured in the
same run with the same function server (`examples/inv_function.py`, aiohttp) on its own port, are the
point. Load generator: {generator}, {DURATION_S} s per point. Invocation through the gateway is direct
(Host-header) invocation unless said otherwise: client -> Granian -> gateway -> NATS JetStream -> worker
-> function and back over NATS.

## Invocation: results against the targets

{chr(10).join(notes)}

## Request/response (NVCF load tests 8.3, 8.6)

{TABLE_HEAD}
| --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |
{chr(10).join(rows)}

| scenario | clients | direct (mean per request, throughput) | gateway | throughput ratio |
| --- | ---: | --- | --- | ---: |
{large_row}

## Platform CPU per request

Microseconds of CPU per request (equally ms per 1,000 requests): user + system time of each process
from `/proc/<pid>/stat` (psutil), read immediately before and after each measured load above and divided
by the requests it completed (wrk's count). It moves less than throughput when other work shares the
machine, but it moves (see the section on CPU before the second edition).
Gateway process: `fnplane up` (gateway, control plane and agent). Worker, function: every worker and
function process under it (the idle long-poll function's pair included). Platform total: gateway process
+ worker + nats-server. Idle, `fnplane up` and everything under it use
{idle_ms_per_s:.1f} ms of CPU per second, which the figures include.
Function, direct call: the bench's own copy of the function under the same load. In the SSE row the
function busy-waits between events, so its columns are mostly that wait.

{CPU_TABLE_HEAD}
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(cpu_rows)}

## SSE event rate, one stream (k6_sse_streaming_test_config)

The function busy-waits between events (as load_tester_supreme does for delays <= 10 ms); events/s is
measured by the client from the first to the last of 1 s worth of events.

| target events/s | direct | through the gateway |
| ---: | ---: | ---: |
{chr(10).join(sse_rows)}

## Held long polls

| scenario | answered 200 | RSS before | peak RSS while held |
| --- | ---: | ---: | ---: |
{hold_row}

{grpc_section}
"""
    DOC.write_text(text + kept.rstrip() + "\n" if kept else text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    sys.exit(main())
