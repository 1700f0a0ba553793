"""The soak's pure parts: the flatness rule, percentiles, the per-process summary, the verdict and the
doc section it writes (bench/soak.py; the run itself is `make soak`)."""

from __future__ import annotations

from collections import Counter

from bench.soak import (
    FDS_TOLERANCE,
    MIX,
    Tally,
    flat,
    percentile,
    replace_section,
    section,
    summarize,
    verdict,
    windows,
    wrap_prose,
)


def test_windows_leave_out_a_warm_up_and_compare_ten_minutes_in_a_long_run() -> None:
    assert windows(31) == (5, 10)
    # a two-minute trial still has a warm-up sample and two windows of one
    assert windows(3) == (1, 1)


def test_a_steady_series_after_a_warm_up_ramp_is_flat() -> None:
    series = [20.0, 60.0, 80.0, 90.0, 95.0] + [100.0, 101.0, 99.0] * 9 + [102.0]
    result = flat(series, 0.10, 5.0)
    assert result.flat
    assert 99 < result.first < 101 and result.last < result.allowed


def test_a_series_that_keeps_growing_is_not_flat() -> None:
    series = [100.0 + 2 * minute for minute in range(31)]  # 2 MiB a minute
    result = flat(series, 0.10, 5.0)
    assert not result.flat
    assert result.last > result.allowed


def test_the_absolute_tolerance_covers_small_processes_and_shrinking_is_flat() -> None:
    small = [10.0] * 15 + [14.0] * 16  # +40 %, but within 5 MiB
    assert flat(small, 0.10, 5.0).flat
    assert flat([50.0] * 15 + [30.0] * 16, 0.10, 5.0).flat
    fds = [float(n) for n in [12] * 15 + [12 + FDS_TOLERANCE + 1] * 16]
    assert not flat(fds, 0.0, FDS_TOLERANCE).flat


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 100) == 100
    assert percentile([], 95) == 0.0


def leaky_and_steady_series() -> dict[str, list[tuple[float, float, int]]]:
    return {
        "fnplane up": [(m, 150.0, 40) for m in range(31)],
        "worker (pid 7)": [(m, 60.0 + m, 20 + m) for m in range(31)],
    }


def test_summary_gives_first_last_max_and_flags_the_leaking_process() -> None:
    up, worker = summarize(leaky_and_steady_series())
    assert (up.rss, up.fds, up.samples) == ((150.0, 150.0, 150.0), (40, 40, 40), 31)
    assert up.rss_flat.flat and up.fds_flat.flat
    assert worker.rss == (60.0, 90.0, 90.0) and worker.fds == (20, 50, 50)
    assert not worker.fds_flat.flat


def tally(errors: int, ok: int = 3000) -> Tally:
    t = Tally()
    for i in range(ok):
        t.add(MIX[i % len(MIX)], 0.02, None)
    for _ in range(errors):
        t.add("pexec", 60.0, "timeout")
    return t


def test_verdict_needs_success_above_99_9_percent_and_flat_processes() -> None:
    steady = summarize({"fnplane up": [(m, 150.0, 40) for m in range(31)]})
    assert all(verdict(tally(errors=2), steady, 31).values())  # 2 in 3,002: 99.93 %
    failed = verdict(tally(errors=4), steady, 31)  # 4 in 3,004: 99.87 %
    assert [name for name, ok in failed.items() if not ok] == ["success > 99.9%"]
    leaky = verdict(tally(errors=0), summarize(leaky_and_steady_series()), 31)
    assert not leaky["open files flat (every process)"]


def test_a_process_that_restarted_fails_the_verdict() -> None:
    series = {
        "fnplane up": [(m, 150.0, 40) for m in range(31)],
        "worker (pid 9)": [(m, 60.0, 20) for m in range(20, 31)],
    }
    assert not verdict(tally(errors=0), summarize(series), 31)["no process restarted or added"]


def test_section_reports_errors_by_kind_and_replaces_only_its_own_section() -> None:
    t = tally(errors=1)
    processes = summarize(leaky_and_steady_series())
    run = {
        "date": "2026-12-01 22:00",
        "commit": "abc1234",
        "minutes": "30",
        "rate": 30.0,
        "achieved_rate": 30.0,
        "max_lag_ms": 3.0,
        "machine": "2 CPUs",
        "load_mean": 1.0,
        "load_max": 2.0,
        "note": "Other work shared the machine.",
        "cpu": "gateway 1",
        "samples": 31,
        "warmup": 5,
        "window": 10,
        "leftovers": "none",
    }
    text = section(t, processes, verdict(t, processes, 31), run)
    assert text.startswith("## Soak\n")
    assert "| pexec | 1,201 | 1,200 | timeout: 1 |" in text
    assert "Other work shared the machine." in text
    assert "Verdict: **FAIL**" in text  # the worker's open files grow
    doc = "# Reliability\n\n## API fuzzing\n\nkept\n\n## Soak\n\nold run\n\n## Later\n\nkept too\n"
    new = replace_section(doc, text)
    assert "old run" not in new and new.count("## Soak") == 1
    assert "## API fuzzing\n\nkept\n" in new and new.endswith("## Later\n\nkept too\n")
    assert replace_section("# Reliability\n\nkept\n", text) == "# Reliability\n\nkept\n\n" + text
    assert Counter(t.sent) == Counter({"pexec": 1201, "direct": 1200, "sse": 600})


def test_the_section_wraps_its_paragraphs_and_leaves_tables_whole() -> None:
    row = "| " + " | ".join(["cell"] * 40) + " |"
    text = wrap_prose("word " * 60 + "\n\n" + row + "\n")
    lines = text.split("\n")
    assert all(len(line) <= 105 for line in lines if not line.startswith("|"))
    assert row in lines and " ".join(lines[: lines.index("")]).split() == ["word"] * 60
