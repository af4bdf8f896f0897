"""Status writes of counters alone wait a moment; everything else is written at once.

The statuses here are the ones a real canary release wrote on the local control plane (one
release, setWeight 50 then pause 5s, 2 replicas), trimmed to the fields that moved.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from typing import Any

import pytest
from sim import Sim, manifest

from herdsman.cluster.apply import Applier
from herdsman.cluster.budget import AccessPolicy
from herdsman.cluster.observe import Observed
from herdsman.cluster.status_lag import CounterLag, only_counters
from herdsman.engine.decide import decide

pytestmark = pytest.mark.unit

PAUSED: dict[str, Any] = {
    "observedGeneration": 2,
    "phase": "Paused",
    "message": "paused at step 2/2",
    "currentStepIndex": 1,
    "step": "2/2",
    "canaryServerGroup": "r1-v002",
    "stableServerGroup": "r1-v001",
    "weights": {"stable": 50, "canary": 50, "baseline": 0},
    "pauseConditions": [{"reason": "PauseStep", "startTime": "2026-12-06T18:11:50.145928Z"}],
    "serverGroups": [
        {"name": "r1-v002", "revision": 2, "role": "canary", "replicas": 1, "readyReplicas": 1,
         "availableReplicas": 1, "podTemplateHash": "fx5snt6fnp"},
        {"name": "r1-v001", "revision": 1, "role": "stable", "replicas": 1, "readyReplicas": 2,
         "availableReplicas": 2, "podTemplateHash": "njxd2d66gr"},
    ],
    "replicas": 2,
    "updatedReplicas": 1,
    "readyReplicas": 3,
    "availableReplicas": 3,
    "conditions": [
        {"type": "Paused", "status": "True", "reason": "Paused", "message": "paused at step 2/2",
         "lastTransitionTime": "2026-12-06T18:11:50.145928Z"},
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
         "message": "3 available, 2 required",
         "lastTransitionTime": "2026-12-06T18:11:46.836673Z"},
    ],
    "cost": {"revision": 2, "canaryReplicaSeconds": 0.066805, "currency": "USD",
             "measuredAt": "2026-12-06T18:11:50.114474Z", "history": []},
}  # fmt: skip


def changed(**edits: Any) -> dict[str, Any]:
    """PAUSED with dotted paths set: changed(**{"serverGroups.1.readyReplicas": 1})."""
    status = copy.deepcopy(PAUSED)
    for path, value in edits.items():
        *parents, last = path.split(".")
        node: Any = status
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return status


def test_the_pods_of_the_old_group_going_away_is_counters_alone() -> None:
    # What the pass after the stable group shrank wrote (+0.15 s in the release).
    after = changed(
        **{
            "availableReplicas": 2,
            "readyReplicas": 2,
            "serverGroups.1.readyReplicas": 1,
            "serverGroups.1.availableReplicas": 1,
            "conditions.1.message": "2 available, 2 required",
        }
    )
    assert only_counters(PAUSED, after)


def test_cost_and_the_progress_clock_are_counters() -> None:
    after = changed(
        **{
            "cost.canaryReplicaSeconds": 0.106939,
            "cost.measuredAt": "2026-12-06T18:11:55.188503Z",
            "lastProgressAt": "2026-12-06T18:11:55.188503Z",
            "updatedReplicas": 2,
        }
    )
    assert only_counters(PAUSED, after)
    assert only_counters(PAUSED, PAUSED)


@pytest.mark.parametrize(
    "edits",
    [
        {"phase": "Progressing"},
        {"message": "canary r1-v002 at 100% at step 2/2"},
        {"currentStepIndex": 2},
        {"weights": {"stable": 0, "canary": 100, "baseline": 0}},
        {"pauseConditions": []},
        {"canaryServerGroup": None},
        {"observedGeneration": 3},
        {"serverGroups.0.role": "stable"},
        {"serverGroups.1.scaleDownAt": "2026-12-06T18:12:25Z"},
        {"conditions.1.status": "False"},
        {"conditions.1.reason": "MinimumReplicasUnavailable"},
        {"conditions.0.message": "resumed"},  # not a count: the Paused condition's words
        {"cost.history": [{"revision": 1}]},
        {"cost.revision": 3},
        {"abort": True},
    ],
)
def test_anything_else_is_written_at_once(edits: dict[str, Any]) -> None:
    after = changed(**edits)
    assert not only_counters(PAUSED, after)
    assert not only_counters(after, PAUSED)


def test_a_group_appearing_or_going_is_not_a_count() -> None:
    one_group = {**PAUSED, "serverGroups": PAUSED["serverGroups"][:1]}
    assert not only_counters(PAUSED, one_group)
    assert not only_counters({}, PAUSED)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_held_write_waits_at_most_the_lag_from_the_first_pass_that_held_it() -> None:
    clock = Clock()
    lag = CounterLag(seconds=2.0, clock=clock)
    key = ("shop", "r1")
    counts = changed(availableReplicas=2)
    assert lag.hold(key, PAUSED, counts, news=False) == 2.0
    clock.now += 1.5  # another counters-only pass: the clock keeps running from the first
    assert lag.hold(key, PAUSED, changed(availableReplicas=1), news=False) == pytest.approx(0.5)
    clock.now += 0.5
    assert lag.hold(key, PAUSED, counts, news=False) is None  # due: written now
    assert lag.held == 0
    # A pass with news, or another change, is written at once and clears what was held.
    assert lag.hold(key, PAUSED, counts, news=False) == 2.0
    assert lag.hold(key, PAUSED, counts, news=True) is None
    assert lag.hold(key, PAUSED, changed(phase="Progressing"), news=False) is None
    assert lag.held == 0
    # Off: every change at once.
    assert CounterLag(seconds=0, clock=clock).hold(key, PAUSED, counts, news=False) is None


class RecordingKube:
    """The Applier's side of the Kubernetes API, recording every write."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def patch(self, url: str, body: Any, *, deadline: Any) -> Any:
        self.calls.append(("PATCH", url, body))
        return {}

    async def create(self, url: str, body: Any, *, deadline: Any) -> Any:
        self.calls.append(("POST", url, body))
        return {}

    async def delete(self, url: str, *, deadline: Any) -> Any:
        self.calls.append(("DELETE", url, None))
        return {}


def test_the_applier_holds_the_pods_of_a_shrunk_group_going_away_then_writes_it_when_due() -> None:
    sim = Sim.of(manifest(replicas=10, steps=[{"setWeight": 50}, {"pause": {}}]))
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.phase == "Paused")
    # The stable group was shrunk to 5; one of its pods is still terminating, as it would be.
    stable = sim.groups["checkout-v001"]
    sim.groups["checkout-v001"] = replace(stable, available=6, ready=6)
    sim.reconcile()
    sim.groups["checkout-v001"] = stable  # and now it is gone
    kube = RecordingKube()
    clock = Clock()
    applier = Applier(kube, counter_lag=CounterLag(seconds=2.0, clock=clock))  # type: ignore[arg-type]

    def apply() -> Any:
        decision = decide(sim.rollout, sim.world(), sim.now)
        raw = sim.body["status"]
        deadline = AccessPolicy().reconcile_deadline()
        observed = Observed(world=sim.world())
        assert asyncio.run(applier.apply(sim.rollout, raw, decision, observed, deadline))
        return decision

    held = apply()
    assert held.status.available_replicas == 10  # the change is there, and only counts moved
    assert kube.calls == []
    assert held.requeue_after is not None
    assert held.requeue_after <= 2.0
    clock.now += 2.0  # the timer's pass
    apply()
    assert len(kube.calls) == 1
    verb, url, body = kube.calls[0]
    assert (verb, url.rsplit("/", 2)[-2:]) == ("PATCH", ["checkout", "status"])
    assert body["status"]["availableReplicas"] == 10
