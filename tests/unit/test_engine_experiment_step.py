"""The canary `experiment` step in the engine: start it once, wait, go on, abort, pause, tidy."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from sim import Sim, manifest

from herdsman.engine.world import Decision, ExperimentView, World

pytestmark = pytest.mark.unit

NAME = "checkout-v002-exp1-a0"
STEP = {
    "experiment": {
        "duration": "1m",
        "templates": [
            {"name": "baseline", "specRef": "stable"},
            {"name": "canary", "specRef": "canary"},
        ],
    }
}


@dataclass
class ExperimentSim(Sim):
    """The Sim with Experiments: created Pending, terminated on request, verdicts set by tests."""

    experiments: dict[str, ExperimentView] = field(default_factory=dict)
    created: list[Any] = field(default_factory=list)

    def world(self) -> World:
        return replace(super().world(), experiments=tuple(self.experiments.values()))

    def apply(self, d: Decision, **kwargs: Any) -> None:
        super().apply(d, **kwargs)
        for new in d.desired.create_experiments:
            self.created.append(new)
            self.experiments.setdefault(new.name, ExperimentView(new.name, "Pending"))
        for name in d.desired.terminate_experiments:
            self.experiments[name] = replace(self.experiments[name], terminating=True)

    def verdict(self, name: str, phase: str, message: str = "") -> None:
        self.experiments[name] = replace(self.experiments[name], phase=phase, message=message)

    def drive(self, passes: int = 12) -> None:
        for _ in range(passes):
            self.reconcile()
            self.settle()
            self.tick()


def at_experiment() -> ExperimentSim:
    sim = ExperimentSim.of(
        manifest(
            steps=[{"setWeight": 20}, STEP, {"setWeight": 50}],
            stableService="checkout",
            canaryService="checkout-canary",
        )
    )
    sim.drive()
    sim.set_image("app:v2")
    sim.drive()
    return sim


def test_the_step_starts_one_experiment_and_waits_for_it() -> None:
    sim = at_experiment()
    assert [e.name for e in sim.created] == [NAME]
    new = sim.created[0]
    assert (new.step_index, new.revision, new.attempt) == (1, 2, 0)
    assert new.stable_group == "checkout-v001"
    assert new.canary_pod_hash == sim.status.current_pod_hash
    assert sim.status.current_step_index == 1
    assert sim.status.phase == "Progressing"
    # Still at 20% while the experiment runs; waiting on it never trips the progress deadline.
    assert sim.status.canary_weight == 20
    sim.tick(3600)
    sim.drive()
    assert sim.status.current_step_index == 1
    assert not any(c.type == "ProgressDeadlineExceeded" for c in sim.status.conditions)


def test_a_successful_experiment_moves_the_rollout_on() -> None:
    sim = at_experiment()
    sim.verdict(NAME, "Successful")
    sim.drive(30)
    assert sim.status.phase == "Healthy"
    assert sim.status.stable_server_group == "checkout-v002"
    reasons = [t.reason for d in sim.history for t in d.transitions]
    assert reasons.count("ExperimentStarted") == 1
    assert reasons.count("ExperimentPassed") == 1


@pytest.mark.parametrize("phase", ["Failed", "Error"])
def test_a_failed_experiment_aborts_the_rollout(phase: str) -> None:
    sim = at_experiment()
    sim.verdict(NAME, phase, "analysis exp-errors failed")
    d = sim.reconcile()
    assert d.status.abort
    assert f"experiment {NAME} {phase.lower()}" in (d.status.abort_reason or "")
    assert d.desired.traffic_first
    assert d.desired.scale.get("checkout-v002") == 0
    sim.drive()
    assert sim.status.phase == "Degraded"
    assert sim.groups["checkout-v001"].replicas == 10


def test_an_inconclusive_experiment_pauses_until_promoted() -> None:
    sim = at_experiment()
    sim.verdict(NAME, "Inconclusive")
    sim.drive()
    assert sim.status.phase == "Paused"
    assert [p.reason for p in sim.status.pause_conditions] == ["Inconclusive"]
    sim.promote(1)
    sim.drive(30)
    assert sim.status.phase == "Healthy"


def test_a_running_experiment_is_terminated_on_abort_and_on_a_new_revision() -> None:
    sim = at_experiment()
    sim.abort()
    d = sim.reconcile()
    assert d.desired.terminate_experiments == [NAME]
    sim = at_experiment()
    sim.set_image("app:v3")
    d = sim.reconcile()
    assert NAME in d.desired.terminate_experiments
    # A terminated one is not asked again.
    sim.drive()
    assert all(NAME not in d.desired.terminate_experiments for d in sim.history[-5:])


def test_a_crash_before_the_create_lands_creates_it_again_with_the_same_name() -> None:
    sim = at_experiment()
    sim.experiments.clear()  # the create was lost
    sim.drive()
    assert [e.name for e in sim.created] == [NAME, NAME]
