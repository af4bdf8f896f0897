"""The ALB router: the annotations the AWS Load Balancer Controller reads, exactly.

The shared interface checks (weights land, no write when held, guarded patches, the user's
object untouched) run for ALB in test_traffic_routers.py; here is what is ALB's own: the JSON
of the forward action, header conditions and their Ingress paths, several Ingresses, and the
pingPong pair taking the target groups' places.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sim import manifest
from test_traffic_routers import (
    HEADER,
    NS,
    UID,
    FakeKube,
    alb_ingress,
    deadline,
    run,
    target,
)

from herdsman.api.canary_steps import SetHeaderRoute
from herdsman.api.rollout import Rollout, RolloutStatus
from herdsman.engine.world import Decision, Desired
from herdsman.traffic import observe_router, write_traffic
from herdsman.traffic.alb import ALB, INGRESSES, MANAGED, desired, read_weights
from herdsman.traffic.base import RouterError

pytestmark = pytest.mark.unit

ACTION = "alb.ingress.kubernetes.io/actions.checkout-root"


def rollout(alb: dict[str, Any] | None = None, **canary: Any) -> Rollout:
    fields: dict[str, Any] = {"stableService": "checkout", "canaryService": "checkout-canary"}
    fields.update(canary)
    body = manifest(
        trafficRouting={
            "alb": alb
            or {"ingress": "checkout-alb", "servicePort": 80, "rootService": "checkout-root"},
            "managedRoutes": [{"name": "beta-users"}],
        },
        **fields,
    )
    body["metadata"]["uid"] = UID
    body["metadata"]["namespace"] = NS
    return Rollout.model_validate(body)


def action(kube: FakeKube, name: str = "checkout-alb", key: str = ACTION) -> Any:
    notes = kube.obj(INGRESSES, name)["metadata"]["annotations"]
    return json.loads(notes[key])


def world(*names: str) -> FakeKube:
    kube = FakeKube()
    for name in names or ("checkout-alb",):
        ing = alb_ingress()
        ing["metadata"]["name"] = name
        kube.put(INGRESSES, ing)
    return kube


def test_the_forward_action_is_the_controllers_json_canary_first() -> None:
    kube, r = world(), rollout()
    run(ALB().apply(kube, r, target(20), deadline()))
    assert action(kube) == {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [
                {"ServiceName": "checkout-canary", "ServicePort": "80", "Weight": 20},
                {"ServiceName": "checkout", "ServicePort": "80", "Weight": 80},
            ]
        },
    }
    managed = json.loads(kube.obj(INGRESSES, "checkout-alb")["metadata"]["annotations"][MANAGED])
    assert managed == {"checkout": [ACTION]}


def test_stickiness_and_a_custom_prefix_are_carried() -> None:
    r = rollout(
        {
            "ingress": "checkout-alb",
            "servicePort": 8443,
            "rootService": "checkout-root",
            "annotationPrefix": "custom.alb.io",
            "stickinessConfig": {"enabled": True, "durationSeconds": 3600},
        }
    )
    kube = world()
    run(ALB().apply(kube, r, target(5), deadline()))
    got = action(kube, key="custom.alb.io/actions.checkout-root")
    assert got["ForwardConfig"]["TargetGroupStickinessConfig"] == {
        "Enabled": True,
        "DurationSeconds": 3600,
    }
    assert {g["ServicePort"] for g in got["ForwardConfig"]["TargetGroups"]} == {"8443"}
    assert run(ALB().observe(kube, r, deadline())).canary_weight == 5


def test_without_root_service_the_action_is_named_after_the_stable_service() -> None:
    kube = FakeKube()
    ing = alb_ingress()
    ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "checkout"
    kube.put(INGRESSES, ing)
    r = rollout({"ingress": "checkout-alb", "servicePort": 80})
    run(ALB().apply(kube, r, target(30), deadline()))
    assert action(kube, key="alb.ingress.kubernetes.io/actions.checkout")["Type"] == "forward"


def test_an_ingress_without_the_action_rule_is_named_and_never_written() -> None:
    kube = world()
    r = rollout({"ingress": "checkout-alb", "servicePort": 80, "rootService": "elsewhere"})
    state = run(ALB().observe(kube, r, deadline()))
    assert not state.available
    assert "spec.strategy.canary.trafficRouting.alb" in state.message
    assert "'elsewhere'" in state.message
    with pytest.raises(RouterError):
        run(ALB().apply(kube, r, target(10), deadline()))
    assert not kube.writes


def test_several_ingresses_move_together_and_a_weight_counts_only_when_all_hold_it() -> None:
    kube = world("a", "b")
    r = rollout({"ingresses": ["a", "b"], "servicePort": 80, "rootService": "checkout-root"})
    run(ALB().apply(kube, r, target(40), deadline()))
    for name in ("a", "b"):
        assert action(kube, name)["ForwardConfig"]["TargetGroups"][0]["Weight"] == 40
    assert run(ALB().observe(kube, r, deadline())).canary_weight == 40
    # Someone sets one back: the state is no weight at all, and the next write mends it.
    notes = kube.obj(INGRESSES, "b")["metadata"]["annotations"]
    url = INGRESSES.url(NS, "b")
    kube.objects[url]["metadata"]["annotations"] = {
        **notes,
        ACTION: notes[ACTION]
        .replace('"Weight":40', '"Weight":0')
        .replace('"Weight":60', '"Weight":100'),
    }
    assert run(ALB().observe(kube, r, deadline())).canary_weight is None
    run(ALB().apply(kube, r, target(40), deadline()))
    assert run(ALB().observe(kube, r, deadline())).canary_weight == 40


def test_a_header_route_is_a_condition_an_action_and_a_path_ahead_and_goes_with_it() -> None:
    kube, r = world(), rollout()
    route = SetHeaderRoute.model_validate(
        {
            "name": "beta-users",
            "match": [
                {"headerName": "Custom-Header", "headerValue": {"exact": "Mozilla*"}},
                {"headerName": "x-tier", "headerValue": {"prefix": "gold"}},
            ],
        }
    )
    run(ALB().apply(kube, r, target(20, route), deadline()))
    ing = kube.obj(INGRESSES, "checkout-alb")
    notes = ing["metadata"]["annotations"]
    assert json.loads(notes["alb.ingress.kubernetes.io/conditions.beta-users"]) == [
        {
            "Field": "http-header",
            "HttpHeaderConfig": {"HttpHeaderName": "Custom-Header", "Values": ["Mozilla*"]},
        },
        {
            "Field": "http-header",
            "HttpHeaderConfig": {"HttpHeaderName": "x-tier", "Values": ["gold*"]},
        },
    ]
    assert action(kube, key="alb.ingress.kubernetes.io/actions.beta-users")["ForwardConfig"][
        "TargetGroups"
    ] == [{"ServiceName": "checkout-canary", "ServicePort": "80", "Weight": 100}]
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    assert [p["backend"]["service"]["name"] for p in paths] == [
        "beta-users",
        "checkout-root",
        "static-files",
    ]
    assert paths[0]["path"] == "/*"
    assert paths[0]["backend"]["service"]["port"] == {"name": "use-annotation"}
    state = run(ALB().observe(kube, r, deadline()))
    assert (state.routes, state.canary_weight) == ({"beta-users"}, 20)
    # The route ends: its annotations and its path go, the user's Ingress is as it was.
    run(ALB().apply(kube, r, target(0, canary=None), deadline()))
    ing = kube.obj(INGRESSES, "checkout-alb")
    assert ing["spec"] == alb_ingress()["spec"]
    assert not any("beta-users" in k for k in ing["metadata"]["annotations"])


def test_a_regex_header_match_is_refused_not_dropped() -> None:
    route = SetHeaderRoute.model_validate(
        {"name": "beta-users", "match": [{"headerName": "x", "headerValue": {"regex": "a.*"}}]}
    )
    with pytest.raises(RouterError, match="regex"):
        desired(alb_ingress(), rollout(), target(10, route))
    assert HEADER.name == "beta-users"


def test_another_rollouts_action_on_the_same_ingress_is_kept() -> None:
    kube = world()
    url = INGRESSES.url(NS, "checkout-alb")
    kube.objects[url]["metadata"]["annotations"][MANAGED] = json.dumps({"other": ["x"]})
    run(ALB().apply(kube, rollout(), target(10), deadline()))
    managed = json.loads(kube.obj(INGRESSES, "checkout-alb")["metadata"]["annotations"][MANAGED])
    assert managed["other"] == ["x"]
    assert len(managed) == 2


def test_reading_an_action_the_operator_did_not_write() -> None:
    r = rollout()
    assert read_weights(r, None) is None
    assert read_weights(r, "not json") is None
    assert read_weights(r, '{"Type":"forward","ForwardConfig":{"TargetGroups":[]}}') is None
    # Lower-case keys (the controller's docs use them) read the same.
    raw = json.dumps(
        {
            "type": "forward",
            "forwardConfig": {
                "targetGroups": [
                    {"serviceName": "checkout", "servicePort": "80", "weight": 70},
                    {"serviceName": "checkout-canary", "servicePort": "80", "weight": 30},
                ]
            },
        }
    )
    assert read_weights(r, raw) == (70, 30, 0)


# --- pingPong -------------------------------------------------------------------------------------

PING_PONG = {"pingService": "ping", "pongService": "pong"}


def ping_pong_rollout(stable: str | None) -> Rollout:
    r = rollout(
        {"ingress": "checkout-alb", "servicePort": 80, "rootService": "checkout-root"},
        stableService=None,
        canaryService=None,
        pingPong=PING_PONG,
    )
    r.status.stable_ping_pong = stable  # type: ignore[assignment]
    return r


@pytest.mark.parametrize(
    ("stable", "groups"), [(None, ("pong", "ping")), ("pong", ("ping", "pong"))]
)
def test_ping_pong_services_take_the_target_groups_places(
    stable: str | None, groups: tuple[str, str]
) -> None:
    kube, r = world(), ping_pong_rollout(stable)
    run(ALB().apply(kube, r, target(25), deadline()))
    tgs = action(kube)["ForwardConfig"]["TargetGroups"]
    assert [(g["ServiceName"], g["Weight"]) for g in tgs] == [(groups[0], 25), (groups[1], 75)]


def test_a_completing_release_swaps_the_pair_in_the_write_that_completes_it() -> None:
    # The decision's status names pong stable: the router is told 0% to ping (the new
    # canary) and 100% to pong, which already selects the new group.
    kube, r = world(), ping_pong_rollout(None)
    run(ALB().apply(kube, r, target(100), deadline()))
    status = RolloutStatus(stable_ping_pong="pong")
    t = target(0, canary=None)
    run(write_traffic(kube, r, Decision(desired=Desired(traffic=t), status=status), deadline()))
    tgs = action(kube)["ForwardConfig"]["TargetGroups"]
    assert [(g["ServiceName"], g["Weight"]) for g in tgs] == [("ping", 0), ("pong", 100)]
    r.status.stable_ping_pong = "pong"
    state = run(observe_router(kube, r, deadline()))
    assert state is not None
    assert state.canary_weight == 0
