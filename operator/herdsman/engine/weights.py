"""Replica arithmetic: how a weight becomes pod counts, and how counts move safely.

Without a traffic router the weight *is* the replica ratio: every server group's pods sit behind
the service users call, so 20% to the canary means 2 of 10 pods are canary pods. Moving between
two splits is a rolling update across several groups, bounded like a Deployment's:

- never more than `replicas + maxSurge` pods asked for in total (the ceiling);
- never fewer than `replicas - maxUnavailable` available pods (the floor), unless traffic
  correctness demands it (an abort in replica mode must take the canary's pods away *now*).

All functions here are pure and total; property tests in tests/unit/test_weights.py hold them to
these promises for every input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from herdsman.api.base import int_or_percent


@dataclass(frozen=True)
class Limits:
    total: int
    surge: int
    unavailable: int

    @property
    def ceiling(self) -> int:
        return self.total + self.surge

    @property
    def floor(self) -> int:
        return max(0, self.total - self.unavailable)


def limits(total: int, max_surge: int | str, max_unavailable: int | str) -> Limits:
    """Resolve maxSurge (rounded up) and maxUnavailable (rounded down) as Deployments do."""
    surge = max(0, int_or_percent(max_surge, total, round_up=True))
    unavailable = max(0, int_or_percent(max_unavailable, total, round_up=False))
    if surge == 0 and unavailable == 0:
        # Both zero would forbid any move; Deployments resolve the tie the same way.
        surge = 1
    return Limits(total=total, surge=surge, unavailable=min(unavailable, total))


def canary_replicas(total: int, weight: int, out_of: int = 100) -> int:
    """Closest pod count for a weight out of `out_of` (maxTrafficWeight); a weight strictly
    between 0 and `out_of` never rounds to zero canary pods."""
    if total <= 0 or weight <= 0:
        return 0
    if weight >= out_of:
        return total
    count = (total * weight * 2 + out_of) // (2 * out_of)  # round half up, in integers
    return min(total, max(1, count))


@dataclass(frozen=True)
class Split:
    canary: int
    baseline: int
    stable: int


def replica_split(total: int, weight: int, *, baseline: bool, ceiling: int | None = None) -> Split:
    """Target pods per role for a weight in replica-ratio mode.

    With a baseline, canary and baseline each carry `weight` (the CRD caps it at 50 then). While
    the weight is below 100 the stable group keeps at least one pod, so a small rollout never
    hands all traffic to unproven code by rounding; that pod may sit in the surge. The split
    never asks for more than `ceiling` pods in total, or the rolling update could never get there:
    the stable side gives way first (tiny rollouts then get coarse weights — use a router).
    """
    if total <= 0:
        return Split(0, 0, 0)
    canary = canary_replicas(total, weight)
    base = canary if baseline and 0 < weight < 100 else 0
    stable = max(0, total - canary - base)
    if weight < 100 and stable == 0:
        stable = 1
    cap = max(total, ceiling if ceiling is not None else total)
    over = canary + base + stable - cap
    if over > 0:
        give = min(over, stable)
        stable -= give
        over -= give
        base = max(0, base - over)
    return Split(canary=canary, baseline=base, stable=stable)


@dataclass(frozen=True)
class GroupCount:
    """One group's current spec replicas and available pods, and where it should end up."""

    name: str
    replicas: int
    available: int
    target: int
    # May drop below the floor to reach target at once (abort in replica mode).
    urgent: bool = False


def step_towards(
    groups: Sequence[GroupCount], lim: Limits, *, settled: bool = True
) -> dict[str, int]:
    """The next spec replicas for each group: as close to target as the bounds allow now.

    Growth is taken first, in the given order, within the ceiling. Shrinking removes pods that are
    not available for free (a ReplicaSet deletes unready pods first), and available pods only as
    far as the floor allows. When a ReplicaSet has not yet observed our last scale (`settled`
    False) its availability is stale, so nothing shrinks except urgently.
    """
    result = {g.name: g.replicas for g in groups}
    headroom = lim.ceiling - sum(g.replicas for g in groups)
    for g in groups:
        if g.urgent and g.target < g.replicas:
            result[g.name] = g.target
            headroom += g.replicas - g.target
    for g in groups:
        if g.target > g.replicas and headroom > 0:
            grow = min(g.target - g.replicas, headroom)
            result[g.name] += grow
            headroom -= grow
    if not settled:
        return result
    # A group's status can still count pods it was just asked to drop (availableReplicas above
    # spec.replicas for a moment): those are leaving anyway and buy no budget.
    budget = sum(min(g.available, g.replicas) for g in groups if not g.urgent) - lim.floor
    for g in groups:
        if g.urgent or g.target >= g.replicas:
            continue
        wanted = g.replicas - g.target
        free = min(wanted, max(0, g.replicas - min(g.available, g.replicas)))
        costly = min(wanted - free, max(0, budget))
        budget -= costly
        result[g.name] -= free + costly
    return result


def at_target(groups: Sequence[GroupCount]) -> bool:
    """Every group asks for its target and every pod asked for is available."""
    return all(g.replicas == g.target and g.available >= g.target for g in groups)


def traffic_weights(shares: Mapping[str, int]) -> dict[str, int]:
    """Integer percentages proportional to `shares` that sum to exactly 100 (largest remainder).

    All-zero shares give everything to the first key (the stable group by convention), so the
    result is always a valid split.
    """
    keys = list(shares)
    total = sum(max(0, v) for v in shares.values())
    if not keys:
        return {}
    if total == 0:
        return {k: (100 if i == 0 else 0) for i, k in enumerate(keys)}
    exact = {k: max(0, shares[k]) * 100 / total for k in keys}
    floors = {k: int(v) for k, v in exact.items()}
    left = 100 - sum(floors.values())
    for k in sorted(keys, key=lambda k: (exact[k] - floors[k], -keys.index(k)), reverse=True)[
        :left
    ]:
        floors[k] += 1
    return floors


def progress_threshold(desired: int, kind: str | None, value: int | None) -> int:
    """Available pods that make a step's scale-up to `desired` count as done (Argo's
    replicaProgressThreshold): `value` percent of `desired` rounded up, or `value` pods; never
    more than `desired`. No threshold: all of them."""
    if kind is None or value is None or desired <= 0:
        return max(0, desired)
    if kind == "Pod":
        return min(desired, max(1, value))
    return min(desired, max(1, -(-desired * value // 100)))
