"""Promises checked continuously on the real cluster while the chaos runs.

A thread polls one namespace (directly, not through the fault proxy) and checks, per Rollout:
- **floor**: ready pods across its groups (stable + canary + baseline, or active + preview) never
  fall below `min(before, floor)`, the floor being `replicas - maxUnavailable` as
  `engine.weights.limits` resolves it (the same statement as tests/unit/test_engine_invariants.py
  `check_floor`), unless the rollout is aborting (an abort in replica-ratio mode removes the
  canary's pods at once by design);
- **one group per revision**: at most one ReplicaSet per revision label and per template hash;
- **immutable templates**: a ReplicaSet's pod template never changes after it is first seen;
- **traffic only to ready pods**: the serving Service (stableService / activeService) and every
  HTTPRoute backend with weight never pick a group with no ready pod while another group of the
  same rollout has some.

The reads of one tick are several lists, not one snapshot: a state seen between two writes of
the same legitimate move (a Service switched, then the old group scaled down) could look wrong.
So a suspected violation counts only if the very next tick, read afresh, shows it again.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from herdsman.cluster.kube import PODS, REPLICA_SETS, ROLLOUTS, SERVICES, Rest
from herdsman.engine import weights
from herdsman.naming import LABEL_GROUP, LABEL_HASH, LABEL_KIND, LABEL_REVISION, LABEL_ROLLOUT
from herdsman.traffic.gatewayapi import HTTP_ROUTES


def ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def floor_of(rollout: dict[str, Any]) -> int:
    spec = rollout.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    canary = (spec.get("strategy") or {}).get("canary")
    if canary is None:
        # Blue/green keeps the active group whole until the switch: nothing is spent.
        return replicas
    return weights.limits(
        replicas, canary.get("maxSurge", "25%"), canary.get("maxUnavailable", "25%")
    ).floor


def aborting(rollout: dict[str, Any]) -> bool:
    status = rollout.get("status") or {}
    return bool(status.get("abort") or status.get("abortedAt") or status.get("phase") == "Degraded")


def template_hash(rs: dict[str, Any]) -> str:
    template = (rs.get("spec") or {}).get("template") or {}
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()


@dataclass
class Invariants:
    rest: Rest
    namespace: str
    interval: float = 0.25
    violations: list[str] = field(default_factory=list)
    ticks: int = 0
    _templates: dict[str, str] = field(default_factory=dict)  # RS uid -> template hash
    _ready_before: dict[str, int] = field(default_factory=dict)  # rollout -> ready pods
    _suspects: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _routes: bool = True

    def start(self) -> Invariants:
        self._thread = threading.Thread(target=self._run, name="invariants", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.violations

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as err:  # a read failed: the next tick reads again
                if "404" in str(err) and self._routes:
                    self._routes = False  # no HTTPRoute CRD on this cluster
            self._stop.wait(self.interval)

    def tick(self) -> None:
        ns = self.namespace
        rollouts = {r["metadata"]["name"]: r for r in self.rest.list(ROLLOUTS.url(ns))}
        sets = self.rest.list(REPLICA_SETS.url(ns))
        pods = self.rest.list(PODS.url(ns))
        services = self.rest.list(SERVICES.url(ns))
        routes = self.rest.list(HTTP_ROUTES.url(ns)) if self._routes else []
        found: list[str] = []
        found += self._immutable(sets)
        found += self._one_group_per_revision(sets)
        ready_by_group: dict[str, int] = {}
        group_rollout: dict[str, str] = {}
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            group = labels.get(LABEL_GROUP)
            if group:
                group_rollout[group] = labels.get(LABEL_ROLLOUT, "")
                ready_by_group[group] = ready_by_group.get(group, 0) + int(ready(pod))
        for rs in sets:
            labels = rs["metadata"].get("labels") or {}
            group_rollout.setdefault(rs["metadata"]["name"], labels.get(LABEL_ROLLOUT, ""))
        found += self._floor(rollouts, ready_by_group, group_rollout)
        found += self._traffic(rollouts, services, routes, ready_by_group, group_rollout)
        self.ticks += 1
        # A suspicion seen twice in a row (fresh reads each time) is a violation.
        now = set(found)
        for text in sorted(now & self._suspects):
            if text not in self.violations:
                self.violations.append(text)
        self._suspects = now

    def _immutable(self, sets: Iterable[dict[str, Any]]) -> list[str]:
        out = []
        for rs in sets:
            uid, digest = rs["metadata"]["uid"], template_hash(rs)
            first = self._templates.setdefault(uid, digest)
            if first != digest:
                out.append(f"template of ReplicaSet {rs['metadata']['name']} was mutated")
        return out

    @staticmethod
    def _one_group_per_revision(sets: Iterable[dict[str, Any]]) -> list[str]:
        out = []
        seen: dict[tuple[str, str, str, str], str] = {}
        for rs in sets:
            labels = rs["metadata"].get("labels") or {}
            rollout = labels.get(LABEL_ROLLOUT)
            if not rollout:
                continue
            for key in (LABEL_REVISION, LABEL_HASH):
                if key not in labels:
                    continue
                # A baseline is a second group of the stable revision, by design: one of each kind.
                slot = (rollout, labels.get(LABEL_KIND, "release"), key, labels[key])
                other = seen.setdefault(slot, rs["metadata"]["name"])
                if other != rs["metadata"]["name"]:
                    out.append(
                        f"{rollout}: two groups for {key}={labels[key]}: {other}, {rs['metadata']['name']}"
                    )
        return out

    def _floor(
        self,
        rollouts: dict[str, dict[str, Any]],
        ready_by_group: dict[str, int],
        group_rollout: dict[str, str],
    ) -> list[str]:
        out = []
        for name, rollout in rollouts.items():
            now = sum(n for g, n in ready_by_group.items() if group_rollout.get(g) == name)
            before = self._ready_before.get(name, 0)
            floor = floor_of(rollout)
            if aborting(rollout):
                self._ready_before[name] = now
                continue
            if now < min(before, floor):
                out.append(f"{name}: ready pods {before} -> {now}, below the floor {floor}")
                continue  # keep `before` until confirmed or cleared
            self._ready_before[name] = now
        return out

    @staticmethod
    def _traffic(
        rollouts: dict[str, dict[str, Any]],
        services: list[dict[str, Any]],
        routes: list[dict[str, Any]],
        ready_by_group: dict[str, int],
        group_rollout: dict[str, str],
    ) -> list[str]:
        out = []
        selected = {
            s["metadata"]["name"]: ((s.get("spec") or {}).get("selector") or {}).get(LABEL_GROUP)
            for s in services
        }

        def starved(group: str | None) -> str | None:
            """The serving group has no ready pod while a sibling has some."""
            if not group or ready_by_group.get(group, 0) > 0:
                return None
            rollout = group_rollout.get(group)
            if rollout is None or rollout not in rollouts or aborting(rollouts[rollout]):
                return None
            up = [g for g, n in ready_by_group.items() if n > 0 and group_rollout.get(g) == rollout]
            return f"{group} (no ready pod) while {sorted(up)} have some" if up else None

        for rollout in rollouts.values():
            strategy = (rollout.get("spec") or {}).get("strategy") or {}
            serving = (strategy.get("canary") or {}).get("stableService") or (
                strategy.get("blueGreen") or {}
            ).get("activeService")
            if serving and (why := starved(selected.get(serving))):
                out.append(f"Service {serving} selects {why}")
        for route in routes:
            for rule in (route.get("spec") or {}).get("rules") or []:
                for ref in rule.get("backendRefs") or []:
                    if int(ref.get("weight", 1)) > 0 and (
                        why := starved(selected.get(ref["name"]))
                    ):
                        out.append(
                            f"HTTPRoute {route['metadata']['name']} sends {ref.get('weight')} to {why}"
                        )
        return out


def settle(check: Invariants, seconds: float = 1.0) -> None:
    """Let the checker see the final state at least twice."""
    start = check.ticks
    end = time.monotonic() + max(seconds, 10)
    while check.ticks < start + 2 and time.monotonic() < end:
        time.sleep(check.interval)
