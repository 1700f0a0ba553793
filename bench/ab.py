"""A/B of the request path's CPU per request: the small-echo scenario only, on two (or more) source
trees at once, alternating short wrk runs so every tree sees the same background load.

    python -m bench.ab --tree base=/tmp/fnplane-base/src --tree new=src --rounds 4 --clients 1,32

Each tree gets its own `fnplane up` (run with PYTHONPATH=<tree>, so its gateway, worker and agent are
that tree's code) with the echo function deployed; each round runs every client count against every
tree in turn (the order flips every round) for FNPLANE_BENCH_DURATION_S seconds (default 5) and prints
rps, p50 and CPU per request per component (bench/cpu.py), the worker's system time and its read and
write system calls per request (/proc/<pid>/io). Each round also runs the direct call (the first tree's
copy of the function on its own port) once per client count, and every tree's rps is given as a ratio
of that round's direct call, which moves less than rps with the machine's other load. The summary gives
each tree's median.
`--hold S` keeps the platforms up S seconds after the rounds (attach py-spy to the printed worker pids).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import psutil

from bench import loadgen
from bench.cpu import FUNCTION, WORKER, CpuMeter, component_of
from bench.platform import Platform

DURATION_S = int(os.environ.get("FNPLANE_BENCH_DURATION_S", "5"))
COLUMNS = ("gateway", "worker", "nats", "platform", "function")


def start(src: str) -> tuple[Platform, dict]:
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(Path(src).resolve())
    try:
        p = Platform()
        p.start()
        fn = p.deploy("bench-echo", "/supreme", concurrency=64)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    return p, fn


def worker_pids(p: Platform) -> list[int]:
    assert p.proc is not None
    return [c.pid for c in psutil.Process(p.proc.pid).children(recursive=True) if component_of(c) == WORKER]


def measure(p: Platform, fn: dict, clients: int, body: bytes) -> dict[str, float]:
    """One wrk run: CPU per request per component, plus the worker's system time and system calls."""
    assert p.proc is not None
    meter = CpuMeter(p.proc.pid)
    headers = {**p.auth, "Host": p.host(fn), "Content-Type": "application/json"}
    workers = [psutil.Process(pid) for pid in worker_pids(p)]
    io_before = [w.io_counters() for w in workers]
    cpu_before = [w.cpu_times() for w in workers]
    before = meter.read()
    res = loadgen.wrk(
        f"{p.url}/supreme", connections=clients, duration_s=DURATION_S, headers=headers, body=body
    )
    us = meter.since(before).per_request_us(res.requests)
    n = max(res.requests, 1)
    io = [(w.io_counters(), b) for w, b in zip(workers, io_before, strict=True)]
    cpu = [(w.cpu_times(), b) for w, b in zip(workers, cpu_before, strict=True)]
    us["worker_sys"] = sum(a.system - b.system for a, b in cpu) * 1e6 / n
    us["reads"] = sum(a.read_count - b.read_count for a, b in io) / n
    us["writes"] = sum(a.write_count - b.write_count for a, b in io) / n
    us["rps"], us["p50"], us["p99"], us["errors"] = res.rps, res.p50_ms, res.p99_ms, res.errors
    return us


def measure_direct(p: Platform, clients: int, body: bytes) -> dict[str, float]:
    """One wrk run against the function's own server: rps, p50 and its CPU per request."""
    assert p.direct_proc is not None
    meter = CpuMeter(p.direct_proc.pid, FUNCTION)
    before = meter.read()
    res = loadgen.wrk(
        f"{p.direct_url}/supreme",
        connections=clients,
        duration_s=DURATION_S,
        headers={"Content-Type": "application/json"},
        body=body,
    )
    us = meter.since(before).per_request_us(res.requests)
    return {"rps": res.rps, "p50": res.p50_ms, "function": us.get(FUNCTION, 0.0)}


def row(us: dict[str, float]) -> str:
    cells = " ".join(f"{k} {us[k]:5.0f}" for k in COLUMNS)
    return (
        f"rps {us['rps']:6.0f} ({us['of_direct']:4.0%} of direct) "
        f"p50 {us['p50']:5.2f} p99 {us['p99']:6.2f} ms "
        f"err {us['errors']:.0f}  {cells}  "
        f"(worker sys {us['worker_sys']:.0f}; worker syscalls/request: read {us['reads']:.2f} "
        f"write {us['writes']:.2f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", action="append", required=True, help="name=path/to/src")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="1,32")
    ap.add_argument("--hold", type=float, default=0.0)
    args = ap.parse_args()
    trees = [t.split("=", 1) for t in args.tree]
    clients = [int(c) for c in args.clients.split(",")]
    body = loadgen.json_body("hello", 1)
    platforms: dict[str, tuple[Platform, dict]] = {}
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    directs: dict[int, list[dict[str, float]]] = {}
    try:
        for name, src in trees:
            platforms[name] = start(src)
            print(f"{name}: {src} up at {platforms[name][0].url}, workers {worker_pids(platforms[name][0])}")
        for r in range(args.rounds):
            order = trees if r % 2 == 0 else trees[::-1]
            for c in clients:
                direct = measure_direct(platforms[trees[0][0]][0], c, body)
                directs.setdefault(c, []).append(direct)
                print(
                    f"round {r} c={c:<3} direct   rps {direct['rps']:6.0f} p50 {direct['p50']:5.2f} ms  "
                    f"function {direct['function']:5.0f}",
                    flush=True,
                )
                for name, _ in order:
                    us = measure(*platforms[name], c, body)
                    us["of_direct"] = us["rps"] / max(direct["rps"], 1.0)
                    results.setdefault((name, c), []).append(us)
                    print(f"round {r} c={c:<3} {name:<8} {row(us)}", flush=True)
        print("\nmedians")
        for c in clients:
            med_direct = {k: statistics.median(d[k] for d in directs[c]) for k in directs[c][0]}
            print(
                f"c={c:<3} direct   n={len(directs[c])} rps {med_direct['rps']:6.0f} "
                f"p50 {med_direct['p50']:5.2f} ms  function {med_direct['function']:5.0f}"
            )
            for name, _ in trees:
                runs = results[(name, c)]
                med = {k: statistics.median(u[k] for u in runs) for k in runs[0]}
                print(f"c={c:<3} {name:<8} n={len(runs)} {row(med)}")
        if args.hold:
            time.sleep(args.hold)
    finally:
        for p, _ in platforms.values():
            p.stop()


if __name__ == "__main__":
    main()
