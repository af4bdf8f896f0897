"""`canary.replicaProgressThreshold` (Argo's): a setWeight or setCanaryScale step's scale-up
counts as done once that share of the canary's pods is available — a percentage of the pods the
step asks for (rounded up) or a number of pods — with or without a router."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sim import Sim, manifest

from herdsman.cli.lint import lint_object
from herdsman.engine.weights import progress_threshold
from herdsman.engine.world import RouterState

pytestmark = pytest.mark.unit

SERVICES = {"stableService": "checkout", "canaryService": "checkout-canary"}
GATEWAY = {"gatewayAPI": {"httpRoute": "checkout"}}
CANARY = "spec.strategy.canary"


@pytest.mark.parametrize(
    ("desired", "kind", "value", "needed"),
    [
        (5, None, None, 5),  # absent: every pod
        (5, "Percent", 80, 4),  # Argo's own case: 4/5 = 80%
        (5, "Percent", 81, 5),  # rounded up
        (5, "Percent", 1, 1),  # never zero while pods are asked for
        (5, "Percent", 150, 5),  # never more than asked
        (5, "Pod", 2, 2),
        (5, "Pod", 9, 5),
        (0, "Pod", 2, 0),
    ],
)
def test_the_threshold_in_pods(
    desired: int, kind: str | None, value: int | None, needed: int
) -> None:
    assert progress_threshold(desired, kind, value) == needed


def body(threshold: dict[str, Any] | None, *, routed: bool) -> dict[str, Any]:
    extra: dict[str, Any] = dict(SERVICES)
    if routed:
        extra["trafficRouting"] = GATEWAY
    if threshold is not None:
        extra["replicaProgressThreshold"] = threshold
    # Without a router the stable group shrinks only within maxUnavailable as canary pods come
    # up; half may be unavailable here, so the threshold alone decides.
    return manifest(
        replicas=10, steps=[{"setWeight": 50}, {"pause": {}}], maxUnavailable="50%", **extra
    )


def at_first_step_with(sim: Sim, canary_available: int) -> None:
    """Drive the first step with the canary stuck at `canary_available` pods up."""
    for _ in range(30):
        sim.reconcile()
        sim.settle()
        g = sim.groups.get("checkout-v002")
        if g is not None:
            up = min(g.replicas, canary_available)
            sim.groups["checkout-v002"] = replace(g, available=up, ready=up)
        sim.tick()


@pytest.mark.parametrize("routed", [True, False])
@pytest.mark.parametrize(
    ("threshold", "up", "left"),
    [
        ({"type": "Percent", "value": 80}, 4, True),
        ({"type": "Percent", "value": 80}, 3, False),
        ({"type": "Pod", "value": 2}, 2, True),
        ({"type": "Pod", "value": 2}, 1, False),
        (None, 4, False),
    ],
)
def test_a_step_is_left_once_the_threshold_of_its_canary_is_available(
    routed: bool, threshold: dict[str, Any] | None, up: int, left: bool
) -> None:
    sim = Sim.of(body(threshold, routed=routed), router=RouterState() if routed else None)
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    at_first_step_with(sim, up)
    assert sim.groups["checkout-v002"].replicas == 5
    assert (sim.status.current_step_index == 1) is left, sim.status
    if routed:
        # The router is given the step's weight exactly when the step counts as scaled up.
        assert sim.router is not None
        assert (sim.router.canary_weight == 50) is left


@pytest.mark.parametrize(
    ("threshold", "path"),
    [
        ({"type": "Percentage", "value": 80}, f"{CANARY}.replicaProgressThreshold.type"),
        ({"type": "Pod", "value": 0}, f"{CANARY}.replicaProgressThreshold.value"),
        ({"type": "Pod"}, f"{CANARY}.replicaProgressThreshold.value"),
    ],
)
def test_a_malformed_threshold_is_refused_naming_the_field(
    threshold: dict[str, Any], path: str
) -> None:
    assert [e.path for e in lint_object(body(threshold, routed=True)).errors] == [path]


def test_argos_documented_threshold_is_valid() -> None:
    assert lint_object(body({"type": "Percent", "value": 90}, routed=False)).errors == []
