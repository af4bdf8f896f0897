"""Release cost: replica-seconds a release consumed beyond the stable size, by role.

The pods a rollout asks for are piecewise constant — they change only by the operator's own
writes (or an HPA), and every change is followed by a reconcile — so integrating the *previous*
pass's extra pods over the time since then is exact. "Extra" is everything beyond
`spec.replicas`: a router's canary (the stable group stays full), the baseline, a blue/green
preview, an old group kept warm after promotion, the surge of a replica-ratio shift. It is
charged to roles in that order of overhead: baseline, preview, canary, old.

Status is not rewritten on every pass (that would wake the operator forever): the sum is brought
up to date when the extra changes, when a transition is written anyway, or once a minute while
there is any extra. The exported gauge extrapolates between updates.

As money: each extra pod costs what it requests (the sum of its containers' `resources.requests`
of CPU and memory: what the scheduler reserves for it, so what the cluster pays) at the prices per
CPU-hour and GiB-hour the operator was given (`--price-cpu-hour`, `--price-gib-hour`; chart values
`cost.*`). Every pod is priced at the current template's requests: a release that also changes its
requests is priced at the new ones. A finished release's bill moves to `cost.history`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from herdsman.api.pod_template import PodTemplate
from herdsman.api.rollout import ServerGroupStatus
from herdsman.api.rollout_status import CostStatus, ReleaseCost
from herdsman.engine.plan import Plan

# Roles charged for extra pods, most clearly overhead first.
CHARGED = ("baseline", "preview", "canary", "old")
REFRESH = timedelta(seconds=60)
HISTORY = 50


@dataclass(frozen=True)
class Prices:
    cpu_hour: float = 0.0316  # a typical on-demand price per vCPU-hour
    gib_hour: float = 0.0042  # and per GiB-hour of memory
    currency: str = "USD"


# Set once at startup from the operator's flags (configuration, never state between passes).
PRICES = Prices()


def configure(prices: Prices) -> None:
    global PRICES
    PRICES = prices


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti|e[0-9]+)?$")
_FACTORS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("250m", "1.5", "512Mi", "1G") as a number; 0 when unreadable."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return 0.0
    number, suffix = float(match.group(1)), match.group(2)
    if suffix and suffix.startswith("e"):
        return number * 10.0 ** int(suffix[1:])
    return number * _FACTORS[suffix]


def pod_requests(template: PodTemplate | None) -> tuple[float, float]:
    """(CPU cores, GiB of memory) one pod of `template` requests (none while a workloadRef
    template is not resolved)."""
    cores = gib = 0.0
    if template is None or template.spec is None:
        return cores, gib
    for container in template.spec.containers:
        requests = container.resources.requests if container.resources is not None else {}
        cores += quantity(requests.get("cpu", 0))
        gib += quantity(requests.get("memory", 0)) / 2.0**30
    return cores, gib


def money(cpu_core_seconds: float, memory_gib_seconds: float, prices: Prices) -> float:
    return (cpu_core_seconds * prices.cpu_hour + memory_gib_seconds * prices.gib_hour) / 3600.0


def charge(
    cost: CostStatus, extra: dict[str, int], seconds: float, pod: tuple[float, float]
) -> None:
    """Add `seconds` of `extra` pods (by role), each requesting `pod`, to `cost`."""
    seconds = max(0.0, seconds)
    cost.canary_replica_seconds += extra["canary"] * seconds
    cost.baseline_replica_seconds += extra["baseline"] * seconds
    cost.preview_replica_seconds += extra["preview"] * seconds
    cost.old_replica_seconds += extra["old"] * seconds
    pods = sum(extra.values()) * seconds
    cost.cpu_core_seconds += pods * pod[0]
    cost.memory_gib_seconds += pods * pod[1]
    cost.amount = money(cost.cpu_core_seconds, cost.memory_gib_seconds, PRICES)
    cost.currency = PRICES.currency


def closed(cost: CostStatus, now: datetime) -> ReleaseCost:
    return ReleaseCost(
        revision=cost.revision,
        started_at=cost.started_at,
        ended_at=now,
        replica_seconds=cost.canary_replica_seconds
        + cost.baseline_replica_seconds
        + cost.preview_replica_seconds
        + cost.old_replica_seconds,
        cpu_core_seconds=cost.cpu_core_seconds,
        memory_gib_seconds=cost.memory_gib_seconds,
        amount=cost.amount,
    )


def extra_by_role(rows: Sequence[ServerGroupStatus], total: int) -> dict[str, int]:
    pods: dict[str, int] = {}
    for row in rows:
        role: str = "stable" if row.role in ("stable", "active") else row.role
        pods[role] = pods.get(role, 0) + row.replicas
    extra = max(0, sum(pods.values()) - total)
    charged: dict[str, int] = {}
    for role in CHARGED:
        take = min(extra, pods.get(role, 0))
        charged[role] = take
        extra -= take
    return charged


def account(plan: Plan) -> None:
    st, old = plan.status, plan.old
    now = plan.now
    before = extra_by_role(old.server_groups, plan.rollout.spec.replicas)
    after = extra_by_role(st.server_groups, plan.spec.replicas)
    cost = old.cost.model_copy(deep=True) if old.cost is not None else None
    pod = pod_requests(plan.spec.template)
    if cost is None or st.current_revision != old.current_revision:
        # A new release starts its own bill; the pods it inherits are charged from now on. The
        # last one's bill, brought up to now, goes to the history.
        history: list[ReleaseCost] = []
        if cost is not None:
            if cost.measured_at is not None:
                charge(cost, before, (now - cost.measured_at).total_seconds(), pod)
            history = [*cost.history, closed(cost, now)][-HISTORY:]
        if any(after.values()) or cost is not None:
            st.cost = CostStatus(
                measured_at=now,
                revision=st.current_revision,
                started_at=now,
                history=history,
                currency=PRICES.currency,
            )
        else:
            st.cost = None
        return
    if cost.measured_at is None:
        cost.measured_at = now
    elapsed = max(0.0, (now - cost.measured_at).total_seconds())
    changed = before != after
    if changed or plan.transitions or (any(before.values()) and elapsed >= REFRESH.total_seconds()):
        charge(cost, before, elapsed, pod)
        cost.measured_at = now
    if any(after.values()):
        plan.due_at(cost.measured_at + REFRESH)
    st.cost = cost


def live(
    cost: CostStatus | None, rows: Sequence[ServerGroupStatus], total: int, now: datetime
) -> dict[str, float]:
    """Cost so far including the time since the last status update (for the metrics gauge)."""
    if cost is None:
        return dict.fromkeys(CHARGED, 0.0)
    elapsed = max(0.0, (now - cost.measured_at).total_seconds()) if cost.measured_at else 0.0
    extra = extra_by_role(rows, total)
    return {
        "canary": cost.canary_replica_seconds + extra["canary"] * elapsed,
        "baseline": cost.baseline_replica_seconds + extra["baseline"] * elapsed,
        "preview": cost.preview_replica_seconds + extra["preview"] * elapsed,
        "old": cost.old_replica_seconds + extra["old"] * elapsed,
    }


def live_amount(
    cost: CostStatus | None, live: dict[str, float], template: PodTemplate | None
) -> float:
    """The money so far including the time since the last status update (for the gauge)."""
    if cost is None:
        return 0.0
    recorded = (
        cost.canary_replica_seconds
        + cost.baseline_replica_seconds
        + cost.preview_replica_seconds
        + cost.old_replica_seconds
    )
    since = max(0.0, sum(live.values()) - recorded)
    cores, gib = pod_requests(template)
    return cost.amount + money(since * cores, since * gib, PRICES)
