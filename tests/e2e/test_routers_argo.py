"""Argo's other routers on the real control plane: AWS ALB (with pingPong), and several routers
at once.

No AWS Load Balancer Controller runs here: harness/routers.py reads the Ingress's action
annotation as that controller does, and the synthetic service's traffic follows it — so a weight
the operator writes is the weight the service gets, through the annotation alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.cluster import Cluster, wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, IMAGE_V3, Rollouts, rollout, service
from harness.routers import (
    ALB,
    INGRESSES,
    ROUTING,
    Event,
    Recorder,
    alb_forward,
    canary_weight_of,
    create_user_objects,
    install_crds,
    router_paths,
    service_groups,
    service_weights,
    to_groups,
    weights_reader,
)
from herdsman.cli import actions
from herdsman.cluster.kube import REPLICA_SETS, SERVICES
from herdsman.naming import LABEL_GROUP
from herdsman.simulate import TrafficSimulator, replica_ratio

pytestmark = pytest.mark.e2e

WEIGHTS = (10, 40, 70)
STEPS = [
    {"setWeight": 10},
    {"pause": {}},
    {"setWeight": 40},
    {"pause": {}},
    {"setWeight": 70},
    {"pause": {}},
]


@pytest.fixture(scope="session")
def router_crds(cluster: Cluster) -> None:
    install_crds(cluster)


@pytest.fixture
def simulators() -> Iterator[list[TrafficSimulator]]:
    started: list[TrafficSimulator] = []
    yield started
    for sim in started:
        sim.stop()


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    started: list[Recorder] = []
    yield started
    for rec in started:
        rec.stop()


def measured_share(traffic: TrafficSimulator, group: str, seconds: float = 2.0) -> float:
    before = dict(traffic.sent)
    time.sleep(seconds)
    after = dict(traffic.sent)
    delta = {g: after.get(g, 0) - before.get(g, 0) for g in after}
    total = sum(delta.values())
    assert total > 100, f"too few requests to measure: {delta}"
    return delta.get(group, 0) / total


def weights_seen(recorder: Recorder, kind: str) -> list[int]:
    seen: list[int] = []
    for event in recorder.ordered():
        w = canary_weight_of(event, kind)
        if w is not None and (not seen or seen[-1] != w):
            seen.append(w)
    return seen


def first(recorder: Recorder, what: str, predicate: Any) -> Event:
    found = wait_until(lambda: recorder.first(predicate), timeout=10, what=what)
    assert isinstance(found, Event)
    return found


# --- ALB ---------------------------------------------------------------------------------------------


def test_alb_every_step_weight_lands_in_the_action_annotation_and_the_service_follows_it(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "alb")
    rollouts.create(rollout(steps=STEPS, trafficRouting=ROUTING["alb"], scaleDownDelaySeconds=2))
    rollouts.wait_healthy("checkout-v001")
    wait_until(
        lambda: service_weights(cluster, ns, "alb") == {"checkout": 100, "checkout-canary": 0},
        what="the action annotation at 0% canary",
    )
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"), weights=weights_reader(cluster, ns, "alb")
    ).start()
    simulators.append(traffic)
    recorder = Recorder(cluster, ns, router_paths("alb")).start()
    recorders.append(recorder)

    rollouts.set_image(IMAGE_V2)
    for i, weight in enumerate(WEIGHTS):
        status = rollouts.wait_phase("Paused", step=f"{2 * i + 2}/6", timeout=60)
        # Read back from the Ingress: the forward action, canary first, on servicePort 80.
        ing = rollouts.rest.get(INGRESSES.url(ns, "checkout-alb"))
        assert ing is not None
        raw = json.loads(ing["metadata"]["annotations"][f"{ALB}/actions.checkout-root"])
        assert raw == {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"ServiceName": "checkout-canary", "ServicePort": "80", "Weight": weight},
                    {"ServiceName": "checkout", "ServicePort": "80", "Weight": 100 - weight},
                ]
            },
        }
        assert status["weights"] == {"stable": 100 - weight, "canary": weight, "baseline": 0}
        time.sleep(0.5)
        share = measured_share(traffic, "checkout-v002")
        assert abs(share - weight / 100) < 0.08, (weight, share)
        actions.promote(rollouts.rest, ns, "checkout")

    rollouts.wait_healthy("checkout-v002", timeout=60)
    assert service_weights(cluster, ns, "alb") == {"checkout": 100, "checkout-canary": 0}
    assert weights_seen(recorder, "alb") == [*WEIGHTS, 0]
    # The user's Ingress spec is as they wrote it: only annotations were written.
    ing = rollouts.rest.get(INGRESSES.url(ns, "checkout-alb"))
    assert ing is not None
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == (
        "checkout-root"
    )
    assert len(ing["spec"]["rules"][0]["http"]["paths"]) == 1
    assert not operator.errors()


def test_alb_abort_puts_100_0_back_in_the_first_write(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "alb")
    rollouts.create(
        rollout(
            steps=[{"setWeight": 30}, {"pause": {}}],
            trafficRouting=ROUTING["alb"],
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    assert service_weights(cluster, ns, "alb") == {"checkout": 70, "checkout-canary": 30}
    recorder = Recorder(cluster, ns, [INGRESSES, SERVICES, REPLICA_SETS]).start()
    recorders.append(recorder)

    actions.abort(rollouts.rest, ns, "checkout")
    rollouts.wait(
        lambda s: s.get("phase") == "Degraded" and s.get("weights", {}).get("canary") == 0,
        what="aborted",
    )
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v002"][0] == 0, what="canary scaled down")
    assert service_weights(cluster, ns, "alb") == {"checkout": 100, "checkout-canary": 0}
    zero = first(recorder, "action at 0", lambda e: canary_weight_of(e, "alb") == 0)
    selector = first(
        recorder,
        "canary Service back on stable",
        lambda e: (
            e.kind == "services"
            and e.name == "checkout-canary"
            and e.obj["spec"]["selector"].get(LABEL_GROUP) == "checkout-v001"
        ),
    )
    shrink = first(
        recorder,
        "canary shrinking",
        lambda e: (
            e.kind == "replicasets" and e.name == "checkout-v002" and e.obj["spec"]["replicas"] < 3
        ),
    )
    assert zero.rv < selector.rv, (zero, selector)
    assert zero.rv < shrink.rv, (zero, shrink)
    assert not operator.errors()


def test_alb_header_route_adds_condition_action_and_path_then_removes_them(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "alb")
    match = [{"headerName": "Custom-Header", "headerValue": {"exact": "Mozilla*"}}]
    rollouts.create(
        rollout(
            steps=[
                {"setWeight": 20},
                {"setHeaderRoute": {"name": "header-route", "match": match}},
                {"pause": {}},
                {"setHeaderRoute": {"name": "header-route"}},
                {"pause": {}},
            ],
            trafficRouting={**ROUTING["alb"], "managedRoutes": [{"name": "header-route"}]},
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="3/5")
    ing = rollouts.rest.get(INGRESSES.url(ns, "checkout-alb"))
    assert ing is not None
    notes = ing["metadata"]["annotations"]
    assert json.loads(notes[f"{ALB}/conditions.header-route"]) == [
        {
            "Field": "http-header",
            "HttpHeaderConfig": {"HttpHeaderName": "Custom-Header", "Values": ["Mozilla*"]},
        }
    ]
    assert alb_forward(ing, "header-route") == {"checkout-canary": 100}
    assert alb_forward(ing) == {"checkout-canary": 20, "checkout": 80}
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    assert [p["backend"]["service"]["name"] for p in paths] == ["header-route", "checkout-root"]
    actions.promote(rollouts.rest, ns, "checkout")
    rollouts.wait_phase("Paused", step="5/5")
    ing = rollouts.rest.get(INGRESSES.url(ns, "checkout-alb"))
    assert ing is not None
    assert not any("header-route" in k for k in ing["metadata"]["annotations"])
    assert len(ing["spec"]["rules"][0]["http"]["paths"]) == 1
    assert not operator.errors()


def test_alb_ping_pong_swaps_the_services_at_each_release(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "alb")
    for svc in ("ping", "pong"):
        rollouts.rest.create(SERVICES.url(ns), service(svc, "checkout"))
    rollouts.create(
        rollout(
            steps=[{"setWeight": 25}, {"pause": {}}],
            services=False,
            pingPong={"pingService": "ping", "pongService": "pong"},
            trafficRouting=ROUTING["alb"],
            scaleDownDelaySeconds=2,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    wait_until(
        lambda: service_weights(cluster, ns, "alb") == {"ping": 100, "pong": 0},
        what="ping stable at 100%",
    )
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"), weights=weights_reader(cluster, ns, "alb")
    ).start()
    simulators.append(traffic)

    for image, group, canary_svc, stable_svc in (
        (IMAGE_V2, "checkout-v002", "pong", "ping"),
        (IMAGE_V3, "checkout-v003", "ping", "pong"),
    ):
        rollouts.set_image(image)
        rollouts.wait_phase("Paused", step="2/2", timeout=60)
        assert service_weights(cluster, ns, "alb") == {canary_svc: 25, stable_svc: 75}
        groups = service_groups(cluster, ns)
        assert groups[canary_svc] == group
        time.sleep(0.5)
        assert abs(measured_share(traffic, group) - 0.25) < 0.08
        recorder = Recorder(cluster, ns, [SERVICES]).start()
        recorders.append(recorder)
        actions.promote(rollouts.rest, ns, "checkout")
        rollouts.wait_healthy(group, timeout=60)
        # The canary's Service became stable without its selector changing; the roles swapped.
        assert rollouts.status()["stablePingPong"] == canary_svc
        assert service_weights(cluster, ns, "alb") == {stable_svc: 0, canary_svc: 100}
        assert to_groups({canary_svc: 100.0}, service_groups(cluster, ns)) == {group: 100.0}
        recorder.stop()
        assert not [e for e in recorder.ordered() if e.name == canary_svc and e.type == "MODIFIED"]
        time.sleep(0.5)
        assert measured_share(traffic, group, 1.0) == 1.0
    assert not operator.errors()


# --- several routers at once ---------------------------------------------------------------------------


def test_two_routers_move_together_and_abort_returns_both_first(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "nginx")
    routing = {**ROUTING["nginx"], **ROUTING["smi"]}
    rollouts.create(
        rollout(
            steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}],
            trafficRouting=routing,
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    for step, weight in (("2/4", 20), ("4/4", 60)):
        status = rollouts.wait_phase("Paused", step=step, timeout=60)
        assert service_weights(cluster, ns, "nginx") == {
            "checkout": 100 - weight,
            "checkout-canary": weight,
        }
        assert service_weights(cluster, ns, "smi") == {
            "checkout": 100 - weight,
            "checkout-canary": weight,
        }
        assert status["weights"]["canary"] == weight
        if weight == 20:
            actions.promote(rollouts.rest, ns, "checkout")
    recorder = Recorder(
        cluster, ns, [*router_paths("nginx"), *router_paths("smi"), SERVICES, REPLICA_SETS]
    ).start()
    recorders.append(recorder)
    actions.abort(rollouts.rest, ns, "checkout")
    rollouts.wait(
        lambda s: s.get("phase") == "Degraded" and s.get("weights", {}).get("canary") == 0,
        what="aborted",
    )
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v002"][0] == 0, what="canary scaled down")
    assert service_weights(cluster, ns, "nginx") == {"checkout": 100}
    assert service_weights(cluster, ns, "smi") == {"checkout": 100, "checkout-canary": 0}
    both = [
        first(recorder, f"{kind} at 0", lambda e, k=kind: canary_weight_of(e, k) == 0)
        for kind in ("nginx", "smi")
    ]
    selector = first(
        recorder,
        "canary Service back on stable",
        lambda e: (
            e.kind == "services"
            and e.name == "checkout-canary"
            and e.obj["spec"]["selector"].get(LABEL_GROUP) == "checkout-v001"
        ),
    )
    for zero in both:
        assert zero.rv < selector.rv, (zero, selector)
    assert not operator.errors()
