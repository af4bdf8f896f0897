"""The Istio router carries a chaos step's httpFault on a route of its own to the canary: the
managed routes (so the stable's requests) untouched, the route gone once the target drops it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_traffic_routers import HEADER, deadline, rollout, run, target, virtual_service, world

from herdsman.api.chaos import HttpFault
from herdsman.simulate import Fault, FaultRoute, GroupInfo, Route, TrafficSimulator
from herdsman.traffic.istio import VIRTUAL_SERVICES, Istio, desired_vs, state

pytestmark = pytest.mark.unit

FAULT = HttpFault.model_validate(
    {
        "headers": {"x-herdsman-chaos": "checkout"},
        "delay": {"fixedDelay": "500ms", "percentage": {"value": 50}},
        "abort": {"httpStatus": 503, "percentage": {"value": 10}},
    }
)
NAME = "herdsman-checkout-chaos-fault"


def test_the_fault_is_on_a_route_of_its_own_to_the_canary_and_nothing_else_changes() -> None:
    r = rollout("istio")
    vs = virtual_service()
    spec = desired_vs(vs, r, replace(target(40, HEADER), http_fault=FAULT))
    chaos, header, primary, other = spec["http"]
    assert chaos["name"] == NAME  # first: Istio takes the first route that matches
    assert chaos["match"] == [
        {"uri": {"prefix": "/"}, "headers": {"x-herdsman-chaos": {"exact": "checkout"}}}
    ]
    assert chaos["route"] == [
        {"destination": {"host": "checkout-canary.shop.svc.cluster.local"}, "weight": 100}
    ]
    assert chaos["fault"] == {
        "delay": {"fixedDelay": "0.5s", "percentage": {"value": 50.0}},
        "abort": {"httpStatus": 503, "percentage": {"value": 10.0}},
    }
    assert header["name"] == "herdsman-checkout-beta-users"
    # The managed route keeps its weights and gets no fault: the stable's requests are as before.
    assert "fault" not in primary
    assert "fault" not in header
    assert [d["weight"] for d in primary["route"]] == [60, 40]
    assert other == virtual_service()["spec"]["http"][1]


def test_the_route_copies_the_managed_routes_behaviour_but_not_its_fault_or_mirror() -> None:
    r = rollout("istio")
    vs = virtual_service()
    primary = vs["spec"]["http"][0]
    primary["timeout"] = "3s"
    primary["retries"] = {"attempts": 2}
    primary["mirror"] = {"host": "shadow"}
    spec = desired_vs(vs, r, replace(target(40), http_fault=FAULT))
    chaos = spec["http"][0]
    assert (chaos["timeout"], chaos["retries"]) == ("3s", {"attempts": 2})
    assert "mirror" not in chaos


def test_without_the_fault_the_route_goes_and_the_object_is_as_the_user_wrote_it() -> None:
    r = rollout("istio")
    vs = virtual_service()
    vs["spec"] = desired_vs(vs, r, replace(target(40), http_fault=FAULT))
    assert state(vs, None, r).http_fault
    cleaned = desired_vs(vs, r, target(40))
    assert [h["name"] for h in cleaned["http"]] == ["primary", "other"]
    vs["spec"] = cleaned
    held = state(vs, None, r)
    assert not held.http_fault
    assert held.canary_weight == 40
    assert held.routes == frozenset()


def test_the_fault_route_is_not_reported_as_a_header_route() -> None:
    r = rollout("istio")
    vs = virtual_service()
    vs["spec"] = desired_vs(vs, r, replace(target(40, HEADER), http_fault=FAULT))
    held = state(vs, None, r)
    assert held.routes == {"beta-users"}
    assert held.http_fault


def test_a_fault_without_headers_still_scopes_by_the_default_header() -> None:
    # Never a route that takes every request: the router resolves the headers again.
    r = rollout("istio")
    bare = FAULT.model_copy(update={"headers": {}})
    chaos = desired_vs(virtual_service(), r, replace(target(40), http_fault=bare))["http"][0]
    assert chaos["match"][0]["headers"] == {"x-herdsman-chaos": {"exact": "checkout"}}


def test_the_router_writes_and_removes_the_route_on_the_api() -> None:
    kube = world("istio")
    r = rollout("istio")
    run(Istio().apply(kube, r, replace(target(40), http_fault=FAULT), deadline()))
    assert run(Istio().observe(kube, r, deadline())).http_fault
    run(Istio().apply(kube, r, target(40), deadline()))
    held = run(Istio().observe(kube, r, deadline()))
    assert not held.http_fault
    assert held.canary_weight == 40
    body = kube.obj(VIRTUAL_SERVICES[0], "checkout")
    assert body is not None
    assert [h["name"] for h in body["spec"]["http"]] == ["primary", "other"]


def test_the_synthetic_service_honours_a_routes_fault() -> None:
    # Tagged requests take the fault route (to the canary, 503 on half of them); the rest the
    # weighted route, unharmed: the canary's errors are the injected ones, stable has none.
    def routing() -> Route:
        def decide(headers: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
            return ({"canary": 100.0} if headers else {"stable": 60.0, "canary": 40.0}), {}

        return decide

    def faults() -> FaultRoute:
        return lambda headers: Fault(abort_status=503, abort_percent=50) if headers else None

    sim = TrafficSimulator(
        lambda: {"stable": GroupInfo("v1", 6), "canary": GroupInfo("v2", 4)},
        routing=routing,
        faults=faults,
        tagged_headers={"x-herdsman-chaos": "checkout"},
        tagged_share=0.3,
    )
    for _ in range(50):
        sim.step()
    codes = {
        (s.labels["group"], s.labels["code"]): s.value
        for metric in sim.registry.collect()
        for s in metric.samples
        if s.name == "herdsman_demo_requests_total"
    }
    assert codes.get(("stable", "503"), 0) == 0
    aborted = codes.get(("canary", "503"), 0)
    assert 0.3 * 2000 * 0.5 * 0.7 < aborted < 0.3 * 2000 * 0.5 * 1.3
    assert set(sim.sent_tagged) == {"canary"}
