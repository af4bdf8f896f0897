"""Which Rollout status writes may wait a moment: those that change nothing but counters.

A release moves pods one at a time, and each move changes a count in status (ready and
available replicas, replica-seconds spent) without changing anything a user or the engine acts
on. Written at once, those were four of a canary release's ten status writes, each a full write
of the Rollout: validated against the CRD's schema, stored in etcd and sent to every watch. So a
change of counters alone waits up to `seconds` (the Rollout is woken then to write it, if
nothing else has); any other change is written at once and carries the counters with it.

Holding a write back is always safe: the engine reads pods and groups from the world, not from
these counts, and the crash walks already drop status writes at random. What a held write costs
is a count in `kubectl get rollouts` up to `seconds` old, and a progress clock (lastProgressAt)
that starts up to `seconds` later.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Top-level status fields that only count or stamp what the world shows.
COUNTERS = frozenset(
    {"replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "lastProgressAt"}
)
# Per server group: its counts (the list's order, names and roles must not change).
GROUP_COUNTERS = frozenset({"replicas", "readyReplicas", "availableReplicas"})
# Cost accumulates with every pass while a release is in flight.
COST_COUNTERS = frozenset(
    {
        "measuredAt",
        "cpuCoreSeconds",
        "memoryGibSeconds",
        "amount",
        "canaryReplicaSeconds",
        "baselineReplicaSeconds",
        "previewReplicaSeconds",
        "oldReplicaSeconds",
    }
)
# The Available condition's message counts pods ("3 available, 2 required"); its status does not.
COUNTED_CONDITIONS = frozenset({"Available"})


def only_counters(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether `new` differs from `old` (both status as stored) in counters alone."""
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        if before == after or key in COUNTERS:
            continue
        if key == "serverGroups" and _rows_differ_in(before, after, GROUP_COUNTERS):
            continue
        if key == "cost" and _differs_in(before, after, COST_COUNTERS):
            continue
        if key == "conditions" and _conditions_differ_in_counts(before, after):
            continue
        return False
    return True


def _differs_in(old: Any, new: Any, allowed: frozenset[str]) -> bool:
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return False
    return all(k in allowed or old.get(k) == new.get(k) for k in old.keys() | new.keys())


def _rows_differ_in(old: Any, new: Any, allowed: frozenset[str]) -> bool:
    if not isinstance(old, list) or not isinstance(new, list) or len(old) != len(new):
        return False
    return all(_differs_in(a, b, allowed) for a, b in zip(old, new, strict=True))


def _conditions_differ_in_counts(old: Any, new: Any) -> bool:
    if not isinstance(old, list) or not isinstance(new, list) or len(old) != len(new):
        return False
    for a, b in zip(old, new, strict=True):
        if a == b:
            continue
        if not isinstance(a, Mapping) or not isinstance(b, Mapping):
            return False
        if a.get("type") not in COUNTED_CONDITIONS or not _differs_in(a, b, frozenset({"message"})):
            return False
    return True


@dataclass
class CounterLag:
    """When a Rollout's counters-only status change is written: at most `seconds` after the
    first pass that held one back (0: every change at once)."""

    seconds: float = 2.0
    clock: Callable[[], float] = time.monotonic
    # Rollout -> when a pass first held back its counters (only while one is held).
    _since: dict[tuple[str, str], float] = field(default_factory=dict)

    def hold(
        self, key: tuple[str, str], old: Mapping[str, Any], new: Mapping[str, Any], *, news: bool
    ) -> float | None:
        """Seconds to hold this status write back, or None to write it now.

        `news`: the pass announces a transition (an Event follows the write: never held).
        """
        if self.seconds <= 0 or news or not only_counters(old, new):
            self._since.pop(key, None)
            return None
        now = self.clock()
        left = self._since.setdefault(key, now) + self.seconds - now
        if left <= 0:
            del self._since[key]
            return None
        return left

    def forget(self, key: tuple[str, str]) -> None:
        self._since.pop(key, None)

    @property
    def held(self) -> int:
        return len(self._since)
