"""The function-status machine and the instance-count plan, as pure functions (compute.md 1.1).

Input: per GPU specification, counts of its instance records. Output: the version's next status and,
per spec, how many instances to add (> 0) or release (< 0).

* DEPLOYING -> ACTIVE when every spec has `running >= minInstances`.
* DEPLOYING -> ERROR when a spec with `minInstances > 0` has no live instance left and at least
  `minInstances` of its instances failed (NVCF: "all instances failed"; we also catch one dead spec of
  several, which NVCF would leave DEPLOYING forever).
* ACTIVE / DEGRADING / DEGRADED -> ACTIVE when every spec has `running >= min`; -> DEGRADED when no
  instance is starting or running (unless ACTIVE and zero-scaled: some spec has `min == 0`);
  -> DEGRADING otherwise.
* INACTIVE and ERROR are left alone (only a deployment POST / DELETE changes them).

Replacement: live desired instances are kept equal to the spec's target. While DEPLOYING, a spec that
has no running instance and already lost one is not topped up (NVCF: "assume a broken container; let
the first batch finish"). A spec with `failure_limit` failures within the failure window is not
topped up either, so a crash-looping version is not replaced forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from fnplane.shared.models.functions import FunctionStatus


@dataclass(frozen=True)
class SpecCounts:
    min_instances: int
    target: int
    running: int  # desired or not: a running instance serves until it is stopped
    pending: int  # requested + starting
    desired_live: int  # requested + starting + running with desired=true
    failed: int  # every failed instance of this spec in the current deployment
    recent_failures: int  # failed within the failure window


def next_status(current: FunctionStatus, specs: list[SpecCounts]) -> FunctionStatus:
    if current not in (
        FunctionStatus.DEPLOYING,
        FunctionStatus.ACTIVE,
        FunctionStatus.DEGRADING,
        FunctionStatus.DEGRADED,
    ):
        return current
    ready = all(s.running >= s.min_instances for s in specs)
    if ready:
        return FunctionStatus.ACTIVE
    if current == FunctionStatus.DEPLOYING:
        dead = any(
            s.min_instances > 0 and s.running + s.pending == 0 and s.failed >= s.min_instances for s in specs
        )
        return FunctionStatus.ERROR if dead else FunctionStatus.DEPLOYING
    live = sum(s.running + s.pending for s in specs)
    if live == 0:
        zero_scaled = current == FunctionStatus.ACTIVE and any(s.min_instances == 0 for s in specs)
        return FunctionStatus.ACTIVE if zero_scaled else FunctionStatus.DEGRADED
    return FunctionStatus.DEGRADING


def instance_delta(status: FunctionStatus, spec: SpecCounts, *, failure_limit: int) -> int:
    """New instances to place (> 0) or desired instances to release (< 0) for one spec."""
    if status in (FunctionStatus.INACTIVE, FunctionStatus.ERROR):
        return -spec.desired_live
    missing = spec.target - spec.desired_live
    if missing <= 0:
        return missing
    if status == FunctionStatus.DEPLOYING and spec.running == 0 and spec.failed > 0:
        return 0
    if spec.recent_failures >= failure_limit:
        return 0
    return missing
