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
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from herdsman.api.rollout import CostStatus, ServerGroupStatus
from herdsman.engine.plan import Plan

# Roles charged for extra pods, most clearly overhead first.
CHARGED = ("baseline", "preview", "canary", "old")
REFRESH = timedelta(seconds=60)


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
    cost = old.cost.model_copy() if old.cost is not None else None
    if cost is None or st.current_revision != old.current_revision:
        # A new release starts its own bill; the pods it inherits are charged from now on.
        st.cost = CostStatus(measured_at=now) if any(after.values()) or cost is not None else None
        return
    if cost.measured_at is None:
        cost.measured_at = now
    elapsed = max(0.0, (now - cost.measured_at).total_seconds())
    changed = before != after
    if changed or plan.transitions or (any(before.values()) and elapsed >= REFRESH.total_seconds()):
        cost.canary_replica_seconds += before["canary"] * elapsed
        cost.baseline_replica_seconds += before["baseline"] * elapsed
        cost.preview_replica_seconds += before["preview"] * elapsed
        cost.old_replica_seconds += before["old"] * elapsed
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
