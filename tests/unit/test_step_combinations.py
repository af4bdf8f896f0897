"""Argo's step-combination rules: a step holds at most one of setWeight, pause, experiment and
analysis (and Herdsman's chaos); setCanaryScale, setHeaderRoute and setMirrorRoute go with any
of them and with each other. Lint and the CRD refuse the rest naming the step; a combined step
runs every part, and the part Argo's controller looks at first decides when it is done."""

from __future__ import annotations

from typing import Any

import pytest
from sim import Sim, manifest

from herdsman.api.rollout import CanaryStep
from herdsman.cli.lint import lint_object
from herdsman.engine.canary.context import describe
from herdsman.engine.world import RouterState

pytestmark = pytest.mark.unit

SERVICES = {"stableService": "checkout", "canaryService": "checkout-canary"}
ROUTING = {
    "gatewayAPI": {"httpRoute": "checkout"},
    "managedRoutes": [{"name": "beta"}, {"name": "copy"}],
}
SCALE = {"setCanaryScale": {"replicas": 2}}
HEADER = {
    "setHeaderRoute": {
        "name": "beta",
        "match": [{"headerName": "x", "headerValue": {"exact": "1"}}],
    }
}
MIRROR = {
    "setMirrorRoute": {"name": "copy", "percentage": 10, "match": [{"method": {"exact": "GET"}}]}
}
ANALYSIS = {"analysis": {"templates": [{"templateName": "t"}]}}


def routed(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return manifest(steps=steps, trafficRouting=ROUTING, **SERVICES)


def paths(steps: list[dict[str, Any]]) -> list[str]:
    return [e.path for e in lint_object(routed(steps)).errors]


@pytest.mark.parametrize(
    "step",
    [
        {**SCALE, **HEADER},
        {**SCALE, **MIRROR},
        {**HEADER, **MIRROR},
        {**SCALE, **HEADER, **MIRROR},
        {"setWeight": 20, **SCALE},
        {"setWeight": 20, **HEADER},
        {"pause": {}, **SCALE, **HEADER},
        {**ANALYSIS, **HEADER},
    ],
)
def test_argo_accepts_these_combinations(step: dict[str, Any]) -> None:
    assert paths([step]) == []


@pytest.mark.parametrize(
    "step",
    [
        {"setWeight": 20, "pause": {}},
        {"setWeight": 20, **ANALYSIS},
        {"pause": {}, **ANALYSIS},
        {"pause": {}, "experiment": {"templates": [{"name": "a", "specRef": "canary"}]}},
        {"setWeight": 20, "pause": {}, **HEADER},
        {},
    ],
)
def test_argo_refuses_these_naming_the_step(step: dict[str, Any]) -> None:
    assert paths([{"setWeight": 10}, step]) == ["spec.strategy.canary.steps[1]"]


def test_a_combined_step_is_described_by_every_part_main_part_first() -> None:
    step = CanaryStep.model_validate({**HEADER, **SCALE})
    assert step.kind == "setCanaryScale"
    assert describe(step) == "setCanaryScale 2 pods + setHeaderRoute beta"


def test_a_combined_step_scales_the_canary_and_sets_the_route_before_it_is_left() -> None:
    sim = Sim.of(
        routed([{"setWeight": 10}, {**SCALE, **HEADER}, {"pause": {}}]), router=RouterState()
    )
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.phase == "Paused")
    assert sim.status.current_step_index == 2
    assert sim.groups["checkout-v002"].replicas == 2
    assert sim.router is not None
    assert sim.router.routes == frozenset({"beta"})
    announced = [t.message for d in sim.history for t in d.transitions if t.reason == "StepStarted"]
    assert "step 2/3: setCanaryScale 2 pods + setHeaderRoute beta" in announced


def test_a_combined_step_waits_for_its_route_to_be_held() -> None:
    sim = Sim.of(routed([{**SCALE, **HEADER}, {"pause": {}}]), router=RouterState())
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    lost = lambda key: key == ("traffic", "router")  # noqa: E731  (the router never takes it)
    for _ in range(10):
        sim.reconcile(drop=lost)
        sim.settle()
        sim.tick()
    # The canary is scaled, but the route is not held: the step is not left.
    assert sim.groups["checkout-v002"].replicas == 2
    assert sim.status.current_step_index == 0
    sim.run_until(lambda s: s.status.phase == "Paused")
    assert sim.status.current_step_index == 1


def test_a_step_with_a_header_and_a_mirror_route_sets_both() -> None:
    sim = Sim.of(
        routed([{"setWeight": 10}, {**HEADER, **MIRROR}, {"pause": {}}]), router=RouterState()
    )
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.phase == "Paused")
    assert sim.router is not None
    assert sim.router.routes == frozenset({"beta", "copy"})


def test_lint_warns_where_a_combined_step_waits_for_more_than_argo_does() -> None:
    report = lint_object(routed([{"setWeight": 10}, {"pause": {"duration": 5}, **SCALE, **HEADER}]))
    assert report.errors == []
    assert [w.path for w in report.warnings] == ["spec.strategy.canary.steps[1]"]
    assert "pause and setCanaryScale" in report.warnings[0].detail
    # A route beside one main part is Argo's meaning exactly: no warning.
    assert lint_object(routed([{**SCALE, **HEADER}])).warnings == []
