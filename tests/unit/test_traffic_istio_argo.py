"""Istio as Argo configures it: several VirtualServices, TLS and TCP routes, and subset routing
with no stable or canary Service."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sim import Sim, manifest
from test_traffic_routers import (
    HEADER,
    UID,
    FakeKube,
    deadline,
    destination_rule,
    run,
    target,
    virtual_service,
)

from herdsman.api.rollout import Rollout
from herdsman.engine.world import RouterState
from herdsman.traffic.base import RouterError
from herdsman.traffic.istio import DESTINATION_RULES, VIRTUAL_SERVICES, Istio

pytestmark = pytest.mark.unit

VS = VIRTUAL_SERVICES[0]
SERVICES = {"stableService": "checkout", "canaryService": "checkout-canary"}


def rollout(istio: dict[str, Any], **canary: Any) -> Rollout:
    body = manifest(trafficRouting={"istio": istio}, **canary)
    body["metadata"]["uid"] = UID
    return Rollout.model_validate(body)


def named(name: str, route: str = "primary") -> dict[str, Any]:
    vs = virtual_service()
    vs["metadata"]["name"] = name
    vs["spec"]["http"][0]["name"] = route
    return vs


def canary_weights(kube: FakeKube, name: str, section: str = "http") -> list[int]:
    return [
        int(d.get("weight", 0))
        for r in kube.obj(VS, name)["spec"].get(section) or []
        for d in r.get("route") or []
        if d["destination"]["host"].startswith("checkout-canary")
    ]


def test_several_virtual_services_move_together() -> None:
    kube = FakeKube(*VIRTUAL_SERVICES)
    kube.put(VS, named("vs1", "primary"))
    kube.put(VS, named("vs2", "secondary"))
    r = rollout(
        {
            "virtualServices": [
                {"name": "vs1", "routes": ["primary"]},
                {"name": "vs2", "routes": ["secondary"]},
            ]
        },
        **SERVICES,
    )
    for w in (10, 60, 0):
        run(Istio().apply(kube, r, target(w), deadline()))
        assert canary_weights(kube, "vs1") == [w]
        assert canary_weights(kube, "vs2") == [w]
        assert run(Istio().observe(kube, r, deadline())).canary_weight == w
    # One of them set back by hand: no weight is claimed until both hold it again.
    body = kube.obj(VS, "vs2")
    body["spec"]["http"][0]["route"][1]["weight"] = 30
    body["spec"]["http"][0]["route"][0]["weight"] = 70
    kube.put(VS, body)
    assert run(Istio().observe(kube, r, deadline())).canary_weight is None


def tls_vs() -> dict[str, Any]:
    vs = virtual_service()
    route = [
        {"destination": {"host": "checkout"}, "weight": 100},
        {"destination": {"host": "checkout-canary"}, "weight": 0},
    ]
    vs["spec"]["tls"] = [
        {"match": [{"port": 443, "sniHosts": ["other"]}], "route": copy.deepcopy(route)},
        {"match": [{"port": 3000, "sniHosts": ["shop"]}], "route": copy.deepcopy(route)},
    ]
    vs["spec"]["tcp"] = [{"match": [{"port": 5432}], "route": copy.deepcopy(route)}]
    return vs


def test_tls_and_tcp_routes_named_by_their_match_get_the_weights_and_nothing_else() -> None:
    kube = FakeKube(*VIRTUAL_SERVICES)
    kube.put(VS, tls_vs())
    r = rollout(
        {
            "virtualService": {
                "name": "checkout",
                "tlsRoutes": [{"port": 3000, "sniHosts": ["shop"]}],
                "tcpRoutes": [{"port": 5432}],
            }
        },
        **SERVICES,
    )
    run(Istio().apply(kube, r, target(25), deadline()))
    assert canary_weights(kube, "checkout", "tls") == [0, 25]  # only the named TLS route
    assert canary_weights(kube, "checkout", "tcp") == [25]
    assert canary_weights(kube, "checkout", "http") == [0]  # HTTP routes not named: untouched
    assert run(Istio().observe(kube, r, deadline())).canary_weight == 25
    with pytest.raises(RouterError, match="header and mirror routes need HTTP routes"):
        run(Istio().apply(kube, r, target(25, HEADER), deadline()))


def test_a_tls_route_that_matches_nothing_is_named() -> None:
    kube = FakeKube(*VIRTUAL_SERVICES)
    kube.put(VS, tls_vs())
    r = rollout({"virtualService": {"name": "checkout", "tlsRoutes": [{"port": 9}]}}, **SERVICES)
    state = run(Istio().observe(kube, r, deadline()))
    assert not state.available
    assert "no tls route matching port 9" in state.message


def subset_vs() -> dict[str, Any]:
    vs = virtual_service()
    vs["spec"]["http"][0]["route"] = [
        {"destination": {"host": "checkout", "subset": "stable"}, "weight": 100},
        {"destination": {"host": "checkout", "subset": "canary"}, "weight": 0},
    ]
    return vs


SUBSETS = {
    "virtualService": {"name": "checkout", "routes": ["primary"]},
    "destinationRule": {
        "name": "checkout",
        "canarySubsetName": "canary",
        "stableSubsetName": "stable",
    },
}


def test_subset_routing_needs_no_stable_or_canary_service() -> None:
    kube = FakeKube(*VIRTUAL_SERVICES, *DESTINATION_RULES)
    kube.put(VS, subset_vs())
    kube.put(DESTINATION_RULES[0], destination_rule())
    r = rollout(SUBSETS)  # no stableService, no canaryService
    run(Istio().apply(kube, r, target(40), deadline()))
    assert run(Istio().observe(kube, r, deadline())).canary_weight == 40
    subsets = kube.obj(DESTINATION_RULES[0], "checkout")["spec"]["subsets"]
    assert {s["name"]: s["labels"]["herdsman.dev/server-group"] for s in subsets} == {
        "stable": "checkout-v001",
        "canary": "checkout-v002",
    }


def test_the_engine_steps_through_a_subset_canary_with_no_services() -> None:
    body = manifest(steps=[{"setWeight": 30}, {"pause": {}}], trafficRouting={"istio": SUBSETS})
    sim = Sim.of(body, router=RouterState())
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.phase == "Paused")
    assert sim.router is not None
    assert sim.router.canary_weight == 30
    assert sim.status.weights.canary == 30
    assert not sim.history[-1].desired.selectors
