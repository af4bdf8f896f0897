"""A baseline group with a traffic router: its own Service, the canary's share, judged fairly.

With `baseline: true` the judge compares the canary with a fresh group of the stable version. In
replica-ratio mode both get traffic through their pods; with a router they get it only if the
router sends it, so the router splits three ways (stable 100 - 2w, canary w, baseline w) through
`baselineService`. These tests hold the routers and the engine to that, without a cluster.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from sim import Sim, manifest
from test_traffic_routers import (
    ROUTING,
    UID,
    FakeKube,
    deadline,
    http_route,
    run,
    traffic_split,
    virtual_service,
    world,
)

from herdsman.api.rollout import Rollout
from herdsman.engine import validation
from herdsman.engine.world import RouterState, ServiceState, TrafficTarget
from herdsman.naming import LABEL_GROUP
from herdsman.traffic import ROUTERS
from herdsman.traffic import base as traffic_base
from herdsman.traffic.base import RouterError
from herdsman.traffic.gatewayapi import HTTP_ROUTES
from herdsman.traffic.istio import VIRTUAL_SERVICES
from herdsman.traffic.nginx import INGRESSES
from herdsman.traffic.smi import TRAFFIC_SPLITS

pytestmark = pytest.mark.unit

BASELINE = {"baseline": True, "baselineService": "checkout-baseline"}
SERVICES = {"stableService": "checkout", "canaryService": "checkout-canary"}


def rollout(kind: str, **canary: Any) -> Rollout:
    body = manifest(**SERVICES, trafficRouting=ROUTING[kind], **{**BASELINE, **canary})
    body["metadata"]["uid"] = UID
    return Rollout.model_validate(body)


def target(canary: int, baseline: int) -> TrafficTarget:
    return TrafficTarget(
        canary_weight=canary,
        canary_group="checkout-v002",
        stable_group="checkout-v001",
        baseline_weight=baseline,
    )


def with_baseline_backend(kind: str) -> FakeKube:
    """The user's object with a baseline backend at weight 0, as the docs tell them to add."""
    if kind == "gatewayAPI":
        route = http_route()
        route["spec"]["rules"][0]["backendRefs"].append(
            {"name": "checkout-baseline", "port": 80, "weight": 0}
        )
        kube = FakeKube(HTTP_ROUTES)
        kube.put(HTTP_ROUTES, route)
    elif kind == "alb":
        kube = world("alb")  # the action annotation is written whole: nothing to add
    elif kind == "istio":
        vs = virtual_service()
        vs["spec"]["http"][0]["route"].append(
            {"destination": {"host": "checkout-baseline"}, "weight": 0}
        )
        kube = FakeKube(*VIRTUAL_SERVICES)
        kube.put(VIRTUAL_SERVICES[0], vs)
    else:
        kube = FakeKube(TRAFFIC_SPLITS)
        kube.put(TRAFFIC_SPLITS, traffic_split())  # no baseline backend: SMI adds it
    return kube


# --- routers ---------------------------------------------------------------------------------------


def test_validation_knows_exactly_the_routers_that_carry_a_baseline_share() -> None:
    capable = {k for k, r in ROUTERS.items() if r.baseline_share}
    assert capable == validation.ROUTERS_WITH_BASELINE
    assert "nginx" not in capable


@pytest.mark.parametrize("kind", sorted(validation.ROUTERS_WITH_BASELINE))
def test_every_capable_router_holds_exactly_the_three_way_split(kind: str) -> None:
    r, kube = rollout(kind), with_baseline_backend(kind)
    router = ROUTERS[kind]
    assert run(router.observe(kube, r, deadline())).available
    for canary, baseline in ((0, 0), (5, 5), (20, 20), (50, 50), (30, 0), (0, 0)):
        run(router.apply(kube, r, target(canary, baseline), deadline()))
        held = run(router.observe(kube, r, deadline()))
        assert held.available, held.message
        assert (held.canary_weight, held.baseline_weight) == (canary, baseline), kind
    assert stable_share(kube, kind) == 100


def stable_share(kube: FakeKube, kind: str) -> int:
    if kind == "gatewayAPI":
        refs = kube.obj(HTTP_ROUTES, "checkout")["spec"]["rules"][0]["backendRefs"]
        return int(next(r["weight"] for r in refs if r["name"] == "checkout"))
    if kind == "alb":
        raw = kube.obj(INGRESSES, "checkout-alb")["metadata"]["annotations"][
            "alb.ingress.kubernetes.io/actions.checkout-root"
        ]
        groups = json.loads(raw)["ForwardConfig"]["TargetGroups"]
        return int(next(g["Weight"] for g in groups if g["ServiceName"] == "checkout"))
    if kind == "istio":
        dests = kube.obj(VIRTUAL_SERVICES[0], "checkout")["spec"]["http"][0]["route"]
        return int(next(d["weight"] for d in dests if d["destination"]["host"] == "checkout"))
    backends = kube.obj(TRAFFIC_SPLITS, "checkout")["spec"]["backends"]
    return int(next(b["weight"] for b in backends if b["service"] == "checkout"))


def test_a_three_way_split_sums_to_100_with_stable_taking_the_rest() -> None:
    kube, r = with_baseline_backend("gatewayAPI"), rollout("gatewayAPI")
    run(ROUTERS["gatewayAPI"].apply(kube, r, target(30, 30), deadline()))
    refs = kube.obj(HTTP_ROUTES, "checkout")["spec"]["rules"][0]["backendRefs"]
    assert {ref["name"]: ref["weight"] for ref in refs} == {
        "checkout": 40,
        "checkout-canary": 30,
        "checkout-baseline": 30,
    }
    # Clamped, never negative: a canary at 70 leaves the baseline at most 30.
    assert traffic_base.split(r, 70, 70) == (0, 70, 30)


@pytest.mark.parametrize("kind", ["gatewayAPI", "istio"])
def test_a_route_without_a_baseline_backend_is_named_and_nothing_moves(kind: str) -> None:
    r, kube = rollout(kind), world(kind)  # the user's objects without a baseline backend
    held = run(ROUTERS[kind].observe(kube, r, deadline()))
    assert not held.available
    assert "baseline" in held.message
    if kind == "gatewayAPI":
        assert "'checkout-baseline'" in held.message
        assert "weight 0" in held.message


def test_smi_adds_the_baseline_backend_to_a_users_split() -> None:
    r, kube = rollout("smi"), with_baseline_backend("smi")
    run(ROUTERS["smi"].apply(kube, r, target(10, 10), deadline()))
    backends = kube.obj(TRAFFIC_SPLITS, "checkout")["spec"]["backends"]
    assert backends == [
        {"service": "checkout", "weight": 80},
        {"service": "checkout-canary", "weight": 10},
        {"service": "checkout-baseline", "weight": 10},
    ]


def test_nginx_refuses_a_baseline_share_rather_than_dropping_it() -> None:
    r = rollout("nginx")
    with pytest.raises(RouterError, match="baseline"):
        run(ROUTERS["nginx"].apply(world("nginx"), r, target(10, 10), deadline()))


def test_a_baseline_share_without_a_baseline_service_is_an_error() -> None:
    r = rollout("gatewayAPI", baseline=False, baselineService=None)
    with pytest.raises(RouterError, match="baselineService"):
        traffic_base.split(r, 10, 10)


# --- validation ------------------------------------------------------------------------------------


def test_validation_refuses_nginx_with_a_baseline_and_names_the_field() -> None:
    found = validation.spec_problems(rollout("nginx"))
    assert [(p.path, p.kind) for p in found] == [("spec.strategy.canary.baseline", "Forbidden")]
    assert "nginx" in found[0].detail


def test_validation_refuses_a_baseline_service_shared_with_another_role() -> None:
    found = validation.spec_problems(rollout("gatewayAPI", baselineService="checkout-canary"))
    assert [p.path for p in found] == ["spec.strategy.canary.baselineService"]


def test_validation_refuses_istio_subsets_with_a_baseline() -> None:
    subsets = {"name": "checkout", "stableSubsetName": "stable", "canarySubsetName": "canary"}
    routing = {**ROUTING["istio"]["istio"], "destinationRule": subsets}
    body = manifest(**SERVICES, trafficRouting={"istio": routing}, **BASELINE)
    found = validation.spec_problems(Rollout.model_validate(body))
    assert [p.path for p in found] == ["spec.strategy.canary.trafficRouting.istio.destinationRule"]


def test_a_missing_baseline_service_holds_the_rollout() -> None:
    body = manifest(**SERVICES, trafficRouting=ROUTING["gatewayAPI"], **BASELINE)
    sim = Sim(body, router=RouterState())
    for svc in ("checkout", "checkout-canary"):
        sim.services[svc] = ServiceState(svc, True)
    d = sim.reconcile()
    assert d.status.phase == "Degraded"
    assert "baselineService: Service 'checkout-baseline' not found" in (d.status.message or "")
    assert d.desired.scale == {}
    assert d.desired.create_groups == []


# --- the engine ------------------------------------------------------------------------------------


def routed(steps: list[dict[str, Any]], replicas: int = 10) -> dict[str, Any]:
    return manifest(
        replicas=replicas,
        steps=steps,
        trafficRouting=ROUTING["gatewayAPI"],
        scaleDownDelaySeconds=0,
        abortScaleDownDelaySeconds=0,
        **SERVICES,
        **BASELINE,
    )


def healthy(body: dict[str, Any]) -> Sim:
    sim = Sim.of(body, router=RouterState())
    sim.run_until(lambda s: s.status.phase == "Healthy")
    return sim


def selected(sim: Sim, svc: str) -> str | None:
    state = sim.services.get(svc)
    return state.selector.get(LABEL_GROUP) if state else None


def test_each_step_gives_baseline_and_canary_the_same_share_through_their_own_services() -> None:
    sim = healthy(routed([{"setWeight": 10}, {"pause": {}}, {"setWeight": 40}, {"pause": {}}]))
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.phase == "Paused")
    assert sim.router is not None
    assert (sim.router.canary_weight, sim.router.baseline_weight) == (10, 10)
    w = sim.status.weights
    assert (w.stable, w.canary, w.baseline) == (80, 10, 10)
    base = sim.status.baseline_server_group
    assert base is not None
    assert selected(sim, "checkout-baseline") == base
    assert selected(sim, "checkout-canary") == "checkout-v002"
    assert selected(sim, "checkout") == "checkout-v001"
    # The baseline runs the stable template and is as large as the canary.
    assert sim.groups[base].replicas == sim.groups["checkout-v002"].replicas == 1

    sim.promote(1)
    sim.run_until(lambda s: s.status.phase == "Paused" and s.status.current_step_index == 3)
    assert (sim.router.canary_weight, sim.router.baseline_weight) == (40, 40)
    assert sim.groups[base].replicas == sim.groups["checkout-v002"].replicas == 4


def test_the_canary_does_not_move_up_until_the_baseline_can_take_its_share() -> None:
    sim = healthy(routed([{"setWeight": 20}, {"pause": {}}]))
    sim.set_image("app:v2")
    sim.reconcile()  # creates the canary and the baseline
    for _ in range(5):
        # Only the canary's pods come up; the baseline's never do.
        g = sim.groups["checkout-v002"]
        sim.groups["checkout-v002"] = replace(
            g, settled=True, available=g.replicas, ready=g.replicas
        )
        d = sim.reconcile()
        sim.tick()
        assert d.desired.traffic is not None
        assert (d.desired.traffic.canary_weight, d.desired.traffic.baseline_weight) == (0, 0)
    sim.run_until(lambda s: s.status.phase == "Paused")
    assert sim.router is not None
    assert (sim.router.canary_weight, sim.router.baseline_weight) == (20, 20)


def test_an_abort_takes_both_shares_away_in_its_first_write() -> None:
    sim = healthy(routed([{"setWeight": 30}, {"pause": {}}]))
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.phase == "Paused")
    sim.abort()
    d = sim.reconcile()
    assert d.desired.traffic_first
    assert d.desired.traffic is not None
    assert (d.desired.traffic.canary_weight, d.desired.traffic.baseline_weight) == (0, 0)
    w = d.status.weights
    assert (w.stable, w.canary, w.baseline) == (100, 0, 0)
    assert selected(sim, "checkout-baseline") == "checkout-v001"


def test_promotion_gives_the_baseline_share_back_before_its_pods_go() -> None:
    sim = healthy(routed([{"setWeight": 25}, {"pause": {}}]))
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.phase == "Paused")
    base = sim.status.baseline_server_group
    assert base is not None
    sim.promote(1)
    passes = 0
    while sim.status.phase != "Healthy" or sim.status.canary_server_group is not None:
        router_before = sim.router
        d = sim.reconcile()
        assert router_before is not None
        if router_before.baseline_weight:
            # While the router still sends the baseline traffic, its pods stay.
            assert d.desired.scale.get(base, sim.groups[base].replicas) > 0
        sim.settle()
        sim.tick()
        passes += 1
        assert passes < 50
    assert sim.router is not None
    assert (sim.router.canary_weight, sim.router.baseline_weight) == (0, 0)
    assert base not in sim.groups or sim.groups[base].replicas == 0
    assert selected(sim, "checkout-baseline") == "checkout-v002"
