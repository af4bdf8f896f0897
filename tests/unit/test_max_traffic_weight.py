"""`trafficRouting.maxTrafficWeight`, with Argo's meaning: every weight (setWeight, the router's,
status.weights) is out of it instead of 100; setWeight may not exceed it; nginx only (Argo's
rule), which gets the total as its canary-weight-total annotation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sim import Sim, manifest

from herdsman.api.rollout import Rollout
from herdsman.cli.lint import lint_object
from herdsman.engine.weights import canary_replicas
from herdsman.engine.world import RouterState
from herdsman.traffic.nginx import desired_canary

pytestmark = pytest.mark.unit

SERVICES = {"stableService": "checkout", "canaryService": "checkout-canary"}
NGINX = {"nginx": {"stableIngress": "checkout"}}
CANARY = "spec.strategy.canary"


def nginx(steps: list[dict[str, Any]], total: int | None = 1000, **canary: Any) -> dict[str, Any]:
    routing: dict[str, Any] = dict(NGINX)
    if total is not None:
        routing["maxTrafficWeight"] = total
    return manifest(steps=steps, trafficRouting=routing, **SERVICES, **canary)


def paths(body: dict[str, Any]) -> list[str]:
    return [e.path for e in lint_object(body).errors]


def test_set_weight_up_to_max_traffic_weight_is_valid() -> None:
    assert paths(nginx([{"setWeight": 5}, {"setWeight": 1000}])) == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (nginx([{"setWeight": 1001}]), f"{CANARY}.steps"),
        (nginx([{"setWeight": 101}], total=None), f"{CANARY}.steps"),
        (nginx([{"setWeight": 50}], total=20), f"{CANARY}.steps"),
        (nginx([{"setWeight": -1}]), f"{CANARY}.steps[0].setWeight"),
        (nginx([{"setWeight": 10}], total=0), f"{CANARY}.trafficRouting.maxTrafficWeight"),
    ],
)
def test_a_weight_beyond_the_total_is_refused_naming_the_field(
    body: dict[str, Any], path: str
) -> None:
    assert paths(body) == [path]


def test_argo_allows_max_traffic_weight_with_nginx_only() -> None:
    body = manifest(
        steps=[{"setWeight": 10}],
        trafficRouting={"gatewayAPI": {"httpRoute": "checkout"}, "maxTrafficWeight": 1000},
        **SERVICES,
    )
    assert paths(body) == [f"{CANARY}.trafficRouting.maxTrafficWeight"]
    both = nginx([{"setWeight": 10}])
    both["spec"]["strategy"]["canary"]["trafficRouting"]["smi"] = {}
    assert f"{CANARY}.trafficRouting.maxTrafficWeight" in paths(both)


@given(total=st.integers(0, 60), weight=st.integers(0, 100))
def test_a_weight_out_of_100_sizes_pods_as_it_always_did_and_scales_with_the_total(
    total: int, weight: int
) -> None:
    # The same share out of a ten times larger total is the same pod count.
    assert canary_replicas(total, weight, 100) == canary_replicas(total, 10 * weight, 1000)
    if 0 < weight < 100 and total > 0:
        assert canary_replicas(total, weight, 100) >= 1


def test_weights_are_out_of_the_total_in_the_router_and_in_status() -> None:
    sim = Sim.of(nginx([{"setWeight": 5}, {"pause": {}}, {"setWeight": 600}, {"pause": {}}]))
    sim.router = RouterState()
    sim.run_until(lambda s: s.status.phase == "Healthy")
    assert sim.status.weights.stable == 1000
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.phase == "Paused")
    # 5 of 1000 is half a percent: one pod of ten (never zero), and 5 in the router.
    assert sim.router is not None
    assert sim.router.canary_weight == 5
    assert sim.groups["checkout-v002"].replicas == 1
    w = sim.status.weights
    assert (w.stable, w.canary, w.baseline) == (995, 5, 0)
    sim.promote()
    sim.run_until(lambda s: s.status.phase == "Paused" and s.status.current_step_index == 3)
    assert sim.router.canary_weight == 600
    assert sim.groups["checkout-v002"].replicas == 6
    sim.promote()
    sim.run_until(lambda s: s.status.phase == "Healthy")
    assert sim.status.stable_server_group == "checkout-v002"
    assert sim.status.weights.stable == 1000
    assert sim.router.canary_weight == 0


def test_nginx_gets_the_total_as_canary_weight_total() -> None:
    stable = {
        "metadata": {"name": "checkout", "annotations": {}},
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {"backend": {"service": {"name": "checkout", "port": {"number": 80}}}}
                        ]
                    }
                }
            ]
        },
    }
    body = nginx([{"setWeight": 5}])
    body["metadata"]["uid"] = "u1"
    notes = desired_canary(stable, Rollout.model_validate(body), 5)["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/canary-weight"] == "5"
    assert notes["nginx.ingress.kubernetes.io/canary-weight-total"] == "1000"
    plain = Rollout.model_validate(nginx([{"setWeight": 5}], total=None))
    notes = desired_canary(stable, plain, 5)["metadata"]["annotations"]
    assert "nginx.ingress.kubernetes.io/canary-weight-total" not in notes
