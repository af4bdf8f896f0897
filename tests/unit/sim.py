"""A tiny, honest model of the cluster for engine tests: ReplicaSets, Services, AnalysisRuns.

Decisions are applied the way the doing layer applies them; pods become available when the test
says so (`settle`), so the tests can stop the world at every intermediate state.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from herdsman.api.rollout import Rollout
from herdsman.engine.decide import decide
from herdsman.engine.world import AnalysisRunView, Decision, ServerGroup, ServiceState, World

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def manifest(
    *,
    replicas: int = 10,
    steps: list[dict[str, Any]] | None = None,
    image: str = "app:v1",
    **canary: Any,
) -> dict[str, Any]:
    strategy: dict[str, Any] = {"steps": steps if steps is not None else [{"setWeight": 20}, {"pause": {}}]}
    strategy.update(canary)
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "strategy": {"canary": strategy},
        },
    }


@dataclass
class Sim:
    body: dict[str, Any]
    now: datetime = T0
    groups: dict[str, ServerGroup] = field(default_factory=dict)
    services: dict[str, ServiceState] = field(default_factory=dict)
    runs: dict[str, AnalysisRunView] = field(default_factory=dict)
    history: list[Decision] = field(default_factory=list)

    @property
    def rollout(self) -> Rollout:
        return Rollout.model_validate(self.body)

    @property
    def status(self) -> Any:
        return self.rollout.status

    def world(self) -> World:
        return World(
            groups=tuple(self.groups.values()),
            services=dict(self.services),
            analysis_runs=tuple(self.runs.values()),
        )

    def reconcile(self) -> Decision:
        decision = decide(self.rollout, self.world(), self.now)
        self.apply(decision)
        self.history.append(decision)
        return decision

    def apply(self, d: Decision) -> None:
        for new in d.desired.create_groups:
            self.groups[new.name] = ServerGroup(
                name=new.name, revision=new.revision, pod_hash=new.pod_hash, kind=new.kind, replicas=new.replicas
            )
        for name, size in d.desired.scale.items():
            g = self.groups[name]
            # Scaling down removes unavailable pods first, as a ReplicaSet does.
            available = min(g.available, size)
            self.groups[name] = replace(g, replicas=size, available=available, ready=available)
        for name in d.desired.delete_groups:
            self.groups.pop(name, None)
        for svc, group in d.desired.selectors.items():
            state = self.services.get(svc, ServiceState(svc, True))
            self.services[svc] = ServiceState(svc, True, {**state.selector, "herdsman.dev/server-group": group})
        for new_run in d.desired.create_runs:
            self.runs[new_run.name] = AnalysisRunView(
                name=new_run.name,
                kind=new_run.kind,
                revision=new_run.revision,
                step_index=new_run.step_index,
                attempt=new_run.attempt,
                phase="Running",
            )
        for name in d.desired.terminate_runs:
            if name in self.runs:
                self.runs[name] = replace(self.runs[name], terminated=True, phase="Successful")
        self.body["status"] = d.status.to_wire()
        self.body["metadata"]["generation"] = self.body["metadata"].get("generation", 1)

    def settle(self, rng: random.Random | None = None) -> None:
        """Pods come up: all of them, or a random share of the missing ones with `rng`."""
        for name, g in list(self.groups.items()):
            missing = g.replicas - g.available
            if missing <= 0:
                continue
            up = missing if rng is None else rng.randint(0, missing)
            self.groups[name] = replace(g, available=g.available + up, ready=g.available + up)

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)

    def set_image(self, image: str) -> None:
        body = copy.deepcopy(self.body)
        body["spec"]["template"]["spec"]["containers"][0]["image"] = image
        body["metadata"]["generation"] += 1
        self.body = body

    def patch_status(self, **fields: Any) -> None:
        self.body.setdefault("status", {}).update(fields)

    def run_until(self, predicate: Any, *, limit: int = 200, rng: random.Random | None = None) -> Decision:
        """Reconcile, settle, tick until predicate(sim) holds; fail loudly if it never does."""
        for _ in range(limit):
            d = self.reconcile()
            if predicate(self):
                return d
            self.settle(rng)
            self.tick()
        raise AssertionError(f"never reached; status: {self.body.get('status')}")

    def canary_size(self) -> int:
        name = self.status.canary_server_group
        return self.groups[name].replicas if name in self.groups else 0
