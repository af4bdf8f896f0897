"""Traffic routers on the real control plane: Gateway API, NGINX Ingress, Istio and SMI.

Each router's CRDs are installed into the test API server (tests/cluster/router-crds/), the
user's object is created the way a user would, and the synthetic service's traffic follows what
the router's object says (harness/routers.py reads it as the data plane would) — so a weight
the operator writes is a weight the service experiences, and the tests measure both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import prometheus
from harness.cluster import Cluster, wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V1, IMAGE_V2, Rollouts, rollout
from harness.routers import (
    HTTP_ROUTES,
    INGRESSES,
    ROUTING,
    TRAFFIC_SPLITS,
    VS,
    Event,
    Recorder,
    canary_weight_of,
    create_user_objects,
    gateway_routing,
    http_route,
    install_crds,
    router_paths,
    service_weights,
    weights_reader,
)
from herdsman.cli import actions
from herdsman.cluster.kube import (
    ANALYSIS_RUNS,
    ANALYSIS_TEMPLATES,
    EVENTS,
    REPLICA_SETS,
    ROLLOUTS,
    SERVICES,
)
from herdsman.naming import LABEL_GROUP
from herdsman.simulate import (
    Behaviour,
    TrafficSimulator,
    error_rate_query,
    mean_latency_query,
    replica_ratio,
)

pytestmark = pytest.mark.e2e

KINDS = ["gatewayAPI", "nginx", "istio", "smi"]
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


def split(kind: str, canary: int) -> dict[str, int]:
    """What each router's object must say for a canary weight, per Service."""
    if kind == "nginx" and canary == 0:
        return {"checkout": 100}  # no canary Ingress at all
    return {"checkout": 100 - canary, "checkout-canary": canary}


def measured_share(traffic: TrafficSimulator, group: str, seconds: float = 2.0) -> float:
    """The share of requests `group` received over the next `seconds`."""
    before = dict(traffic.sent)
    time.sleep(seconds)
    after = dict(traffic.sent)
    delta = {g: after.get(g, 0) - before.get(g, 0) for g in after}
    total = sum(delta.values())
    assert total > 100, f"too few requests to measure: {delta}"
    return delta.get(group, 0) / total


def router_weights_seen(recorder: Recorder, kind: str) -> list[int]:
    """The canary weights the router's object held, in the order they were written."""
    seen: list[int] = []
    for event in recorder.ordered():
        w = canary_weight_of(event, kind)
        if w is not None and (not seen or seen[-1] != w):
            seen.append(w)
    return seen


# --- every step, exactly -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_step_weight_lands_exactly_and_completion_leaves_nothing_behind(
    kind: str,
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, kind)
    rollouts.create(rollout(steps=STEPS, trafficRouting=ROUTING[kind], scaleDownDelaySeconds=2))
    rollouts.wait_healthy("checkout-v001")
    wait_until(lambda: service_weights(cluster, ns, kind) == split(kind, 0), what="0% canary")
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"), weights=weights_reader(cluster, ns, kind)
    ).start()
    simulators.append(traffic)
    recorder = Recorder(cluster, ns, router_paths(kind)).start()
    recorders.append(recorder)

    rollouts.set_image(IMAGE_V2)
    for i, weight in enumerate(WEIGHTS):
        status = rollouts.wait_phase("Paused", step=f"{2 * i + 2}/6", timeout=60)
        assert service_weights(cluster, ns, kind) == split(kind, weight)
        assert status["weights"] == {"stable": 100 - weight, "canary": weight, "baseline": 0}
        # The stable group stays at full size until promotion; the canary carries its share.
        sizes = rollouts.sizes()
        assert sizes["checkout-v001"] == (10, 10)
        assert sizes["checkout-v002"][1] >= weight // 10
        # ...and the synthetic service gets exactly that split (within sampling noise).
        time.sleep(0.5)
        share = measured_share(traffic, "checkout-v002")
        assert abs(share - weight / 100) < 0.08, (weight, share)
        actions.promote(rollouts.rest, ns, "checkout")

    rollouts.wait_healthy("checkout-v002", timeout=60)
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v001"] == (0, 0), what="old stable down")
    assert service_weights(cluster, ns, kind) == split(kind, 0)
    assert rollouts.selector("checkout")[LABEL_GROUP] == "checkout-v002"
    assert rollouts.selector("checkout-canary")[LABEL_GROUP] == "checkout-v002"
    time.sleep(0.5)
    assert measured_share(traffic, "checkout-v002", 1.0) == 1.0
    # Nothing left behind: the user's object is as they wrote it (weights 100/0) and the
    # operator's own objects are gone (nginx) or at 100/0 (the SMI split it created).
    if kind == "gatewayAPI":
        route = rollouts.rest.get(HTTP_ROUTES.url(ns, "checkout"))
        assert route is not None
        assert route["spec"]["rules"] == http_route()["spec"]["rules"]
    elif kind == "nginx":
        assert [i["metadata"]["name"] for i in rollouts.rest.list(INGRESSES.url(ns))] == [
            "checkout"
        ]
    elif kind == "istio":
        vs = rollouts.rest.get(VS.url(ns, "checkout"))
        assert vs is not None
        assert [r["name"] for r in vs["spec"]["http"]] == ["primary"]
    else:
        ts = rollouts.rest.get(TRAFFIC_SPLITS.url(ns, "checkout"))
        assert ts is not None
        assert ts["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
    # Every weight the router ever held, in order: each step's, then 0 — never 100 (the
    # promotion switches Services instead), nothing in between.
    assert router_weights_seen(recorder, kind) == [*WEIGHTS, 0]
    assert not operator.errors()


# --- abort: the router first ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_abort_returns_the_router_to_zero_before_anything_else_moves(
    kind: str,
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, kind)
    rollouts.create(
        rollout(
            steps=[{"setWeight": 30}, {"pause": {}}],
            trafficRouting=ROUTING[kind],
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    assert service_weights(cluster, ns, kind) == split(kind, 30)
    recorder = Recorder(cluster, ns, [*router_paths(kind), SERVICES, REPLICA_SETS]).start()
    recorders.append(recorder)

    actions.abort(rollouts.rest, ns, "checkout")
    rollouts.wait(
        lambda s: s.get("phase") == "Degraded" and s.get("weights", {}).get("canary") == 0,
        what="aborted",
    )
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v002"][0] == 0, what="canary scaled down")
    assert service_weights(cluster, ns, kind) == split(kind, 0)

    router_went_first(recorder, kind, canary_pods=3)
    assert operator.logged("checkout", "RolloutAborted").count("RolloutAborted") == 1


def router_went_first(recorder: Recorder, kind: str, *, canary_pods: int) -> None:
    """The router's 0 was written before the canary Service moved and the canary shrank."""

    def first(what: str, predicate: Any) -> Event:
        found = wait_until(lambda: recorder.first(predicate), timeout=10, what=what)
        assert isinstance(found, Event)
        return found

    zero = first("router at 0", lambda e: canary_weight_of(e, kind) == 0)
    selector = first(
        "canary Service back on stable",
        lambda e: (
            e.kind == "services"
            and e.name == "checkout-canary"
            and e.obj["spec"]["selector"].get(LABEL_GROUP) == "checkout-v001"
        ),
    )
    shrink = first(
        "canary shrinking",
        lambda e: (
            e.kind == "replicasets"
            and e.name == "checkout-v002"
            and e.obj["spec"]["replicas"] < canary_pods
        ),
    )
    # etcd revisions are one sequence: the router's write came before both others.
    assert zero.rv < selector.rv, (zero, selector)
    assert zero.rv < shrink.rv, (zero, shrink)


# --- header routes ---------------------------------------------------------------------------------------


def test_a_header_route_sends_only_matching_requests_to_the_canary(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "gatewayAPI")
    beta = {"headerName": "x-beta", "headerValue": {"exact": "yes"}}
    rollouts.create(
        rollout(
            steps=[
                {"setCanaryScale": {"replicas": 2}},
                {"setHeaderRoute": {"name": "beta", "match": [beta]}},
                {"pause": {}},
                {"setWeight": 20},
                {"pause": {}},
            ],
            trafficRouting={**ROUTING["gatewayAPI"], "managedRoutes": [{"name": "beta"}]},
        )
    )
    rollouts.wait_healthy("checkout-v001")
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"),
        routing=gateway_routing(cluster, ns),
        tagged_headers={"x-beta": "yes"},
        tagged_share=0.3,
    ).start()
    simulators.append(traffic)
    rollouts.set_image(IMAGE_V2)

    def counted(seconds: float = 2.0) -> tuple[dict[str, int], dict[str, int]]:
        time.sleep(0.5)
        tagged, untagged = dict(traffic.sent_tagged), dict(traffic.sent_untagged)
        time.sleep(seconds)
        return (
            {g: n - tagged.get(g, 0) for g, n in traffic.sent_tagged.items()},
            {g: n - untagged.get(g, 0) for g, n in traffic.sent_untagged.items()},
        )

    # Weight 0, a header route: the beta users, and only they, reach the canary.
    rollouts.wait_phase("Paused", step="3/5")
    route = rollouts.rest.get(HTTP_ROUTES.url(ns, "checkout"))
    assert route is not None
    assert [r.get("name") for r in route["spec"]["rules"]] == ["herdsman-checkout-beta", "main"]
    assert rollouts.sizes()["checkout-v002"] == (2, 2)
    tagged, untagged = counted()
    assert tagged.get("checkout-v002", 0) > 20
    assert tagged.get("checkout-v001", 0) == 0
    assert untagged.get("checkout-v002", 0) == 0
    assert untagged.get("checkout-v001", 0) > 50

    # 20% as well: beta users still all on the canary, everyone else 80/20.
    actions.promote(rollouts.rest, ns, "checkout")
    rollouts.wait_phase("Paused", step="5/5")
    tagged, untagged = counted(3.0)
    assert tagged.get("checkout-v001", 0) == 0
    share = untagged.get("checkout-v002", 0) / sum(untagged.values())
    assert abs(share - 0.2) < 0.08, share

    # Completion: the header rule is gone, the route is the user's again.
    actions.promote(rollouts.rest, ns, "checkout")
    rollouts.wait_healthy("checkout-v002")
    route = rollouts.rest.get(HTTP_ROUTES.url(ns, "checkout"))
    assert route is not None
    assert route["spec"]["rules"] == http_route()["spec"]["rules"]
    assert not operator.errors()


# --- a router that is not there ---------------------------------------------------------------------------


def test_a_missing_route_holds_the_rollout_with_a_clear_condition_until_it_exists(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
) -> None:
    ns = rollouts.ns
    routing = {"gatewayAPI": {"httpRoute": "checkout", "ruleNames": ["main"]}}
    rollouts.create(rollout(steps=[{"setWeight": 20}, {"pause": {}}], trafficRouting=routing))

    def condition() -> str | None:
        for c in rollouts.status().get("conditions", []):
            if c["type"] == "InvalidSpec" and c["status"] == "True":
                return str(c["message"])
        return None

    message = wait_until(condition, timeout=30, what="InvalidSpec")
    assert message == (
        f"spec.strategy.canary.trafficRouting.gatewayAPI.httpRoute: HTTPRoute 'checkout' not"
        f" found in namespace '{ns}'"
    )
    assert rollouts.status()["phase"] == "Degraded"
    assert rollouts.groups() == {}  # nothing moved: not even the first group

    # The route exists, but without the named rule: said just as clearly.
    body = http_route()
    body["spec"]["rules"][0]["name"] = "primary"
    cluster.rest.create(HTTP_ROUTES.url(ns), body)
    wake(rollouts)
    rollouts.wait(lambda _: "no rule named 'main'" in (condition() or ""), what="rule missing")
    assert rollouts.groups() == {}

    def invalid_spec_events() -> list[dict[str, Any]] | None:
        found = [
            e
            for e in cluster.rest.list(EVENTS.url(ns))
            if e["involvedObject"]["name"] == "checkout" and e["reason"] == "InvalidSpec"
        ]
        said = " ".join(e["message"] for e in found)
        return found if "not found" in said and "no rule named" in said else None

    # Events are sent apart from the pass that announced them: a moment after the status.
    events = wait_until(invalid_spec_events, timeout=10, what="both InvalidSpec Events")
    assert {e["type"] for e in events} == {"Warning"}
    assert any("HTTPRoute 'checkout' not found" in e["message"] for e in events)
    assert any("no rule named 'main'" in e["message"] for e in events)

    # Fixed: the rollout starts, and says so.
    route = cluster.rest.get(HTTP_ROUTES.url(ns, "checkout"))
    assert route is not None
    route["spec"]["rules"][0]["name"] = "main"
    cluster.rest.patch(HTTP_ROUTES.url(ns, "checkout"), {"spec": route["spec"]})
    wake(rollouts)
    rollouts.wait_healthy("checkout-v001")
    assert "SpecValid" in operator.logged("checkout", "SpecValid")


def wake(rollouts: Rollouts) -> None:
    """Routes are not watched (the operator looks again every 30s); a change to the Rollout
    wakes it at once, which keeps the test short."""
    rollouts.rest.patch(
        ROLLOUTS.url(rollouts.ns, "checkout"),
        {"metadata": {"annotations": {"test/wake": str(time.monotonic())}}},
    )


# --- closing the loop: a bad canary behind a router -------------------------------------------------------


def routed_traffic(
    cluster: Cluster, ns: str, behaviours: dict[str, Behaviour], simulators: list[TrafficSimulator]
) -> TrafficSimulator:
    """The synthetic service, its traffic split the way the namespace's HTTPRoute says."""
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"),
        behaviours,
        weights=weights_reader(cluster, ns, "gatewayAPI"),
    ).start()
    simulators.append(traffic)
    return traffic


def create_template(rollouts: Rollouts, name: str, spec: dict[str, Any]) -> None:
    rollouts.rest.create(
        ANALYSIS_TEMPLATES.url(rollouts.ns),
        {
            "apiVersion": "herdsman.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def test_a_failing_analysis_takes_the_router_to_zero_first_and_the_canary_stops_serving(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "gatewayAPI")
    traffic = routed_traffic(
        cluster, ns, {IMAGE_V1: Behaviour(), IMAGE_V2: Behaviour(error_rate=0.3)}, simulators
    )
    prom = prometheus.start([traffic.target], binary=prometheus.binary_or_skip())
    try:
        metric: dict[str, Any] = {
            "name": "error-rate",
            "provider": {"prometheus": {"address": prom.url, "query": error_rate_query()}},
            "interval": "2s",
            "count": 3,
            "initialDelay": "8s",
            "successCondition": "result[0] < 0.05",
            "failureCondition": "result[0] >= 0.05",
        }
        create_template(rollouts, "errors", {"metrics": [metric]})
        rollouts.create(
            rollout(
                steps=[
                    {"setWeight": 20},
                    {"analysis": {"templates": [{"templateName": "errors"}]}},
                    {"setWeight": 50},
                ],
                trafficRouting=ROUTING["gatewayAPI"],
                abortScaleDownDelaySeconds=0,
            )
        )
        rollouts.wait_healthy("checkout-v001")
        recorder = Recorder(cluster, ns, [HTTP_ROUTES, SERVICES, REPLICA_SETS]).start()
        recorders.append(recorder)
        rollouts.set_image(IMAGE_V2)

        status = rollouts.wait_phase("Degraded", timeout=90)
        assert "error-rate" in status["message"]
        assert service_weights(cluster, ns, "gatewayAPI") == split("gatewayAPI", 0)
        # The canary served its 20% while it was measured, and nothing once judged.
        assert traffic.sent.get("checkout-v002", 0) > 0
        time.sleep(0.5)
        assert measured_share(traffic, "checkout-v002", 1.5) == 0.0
        # The abort's first write was the router's 0 (the recorder saw the 20% before it).
        assert router_weights_seen(recorder, "gatewayAPI") == [20, 0]
        router_went_first(recorder, "gatewayAPI", canary_pods=2)
        assert "error-rate" in operator.wait_for("RolloutAborted", rollout="checkout").message
    finally:
        prom.stop()


# --- a baseline behind a router ----------------------------------------------------------------------


def test_the_baseline_gets_the_canarys_share_through_the_router_and_the_judge_compares_them(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
) -> None:
    # Gateway API with baseline: true. The HTTPRoute splits three ways (stable 60, canary 20,
    # baseline 20), the synthetic service experiences that split, and the judge, comparing the
    # canary with a baseline that really serves, catches +30% latency.
    ns = rollouts.ns
    cluster.rest.create(HTTP_ROUTES.url(ns), http_route(baseline="checkout-baseline"))
    behaviours = {
        IMAGE_V1: Behaviour(latency=0.1, jitter=0.01),
        IMAGE_V2: Behaviour(latency=0.13, jitter=0.01),
    }
    traffic = routed_traffic(cluster, ns, behaviours, simulators)
    prom = prometheus.start([traffic.target], binary=prometheus.binary_or_skip())
    try:
        judged: dict[str, Any] = {
            "name": "latency-vs-baseline",
            "provider": {
                "prometheus": {"address": prom.url, "query": mean_latency_query("{{group}}")}
            },
            "interval": "3s",
            "count": 3,
            # Room for Prometheus to hold 20 s of the new groups' points (the lookback) before
            # the first judgement: the step starts as soon as the weights hold.
            "initialDelay": "20s",
            "judge": {"direction": "increase", "allowedIncrease": 1.1, "critical": True},
        }
        scoring = {"step": "1s", "lookback": "20s"}
        create_template(rollouts, "latency", {"metrics": [judged], "scoring": scoring})
        rollouts.create(
            rollout(
                replicas=10,
                steps=[
                    {"setWeight": 20},
                    {"analysis": {"templates": [{"templateName": "latency"}]}},
                    {"setWeight": 50},
                ],
                trafficRouting=ROUTING["gatewayAPI"],
                baseline=True,
                baselineService="checkout-baseline",
                abortScaleDownDelaySeconds=0,
            )
        )
        rollouts.wait_healthy("checkout-v001")
        rollouts.set_image(IMAGE_V2)

        three_way = {"checkout": 60, "checkout-canary": 20, "checkout-baseline": 20}
        rollouts.wait(
            lambda st: (
                st.get("weights") == {"stable": 60, "canary": 20, "baseline": 20}
                and service_weights(cluster, ns, "gatewayAPI") == three_way
            ),
            what="the HTTPRoute and the status at stable 60 / canary 20 / baseline 20",
        )
        services = {
            s["metadata"]["name"]: s["spec"]["selector"].get(LABEL_GROUP)
            for s in cluster.rest.list(SERVICES.url(ns))
        }
        assert services["checkout-baseline"] == "checkout-v001-baseline"
        assert services["checkout-canary"] == "checkout-v002"
        # Baseline and canary really serve the same share, each about a fifth.
        canary_share = measured_share(traffic, "checkout-v002", 3.0)
        baseline_share = measured_share(traffic, "checkout-v001-baseline", 3.0)
        assert 0.12 < canary_share < 0.28, canary_share
        assert 0.12 < baseline_share < 0.28, baseline_share

        status = rollouts.wait_phase("Degraded", timeout=120)
        assert "latency-vs-baseline" in status["message"]
        run = rollouts.rest.get(ANALYSIS_RUNS.url(ns, "checkout-v002-step1-a0"))
        assert run is not None
        judgement = run["status"]["metricResults"][0]["judgement"]
        assert judgement["classification"] == "High"
        assert judgement["pValue"] < 0.05
        # The baseline was measured (it served), not an empty sample.
        assert judgement["baseline"]["count"] >= 3
        # The abort took both shares back: everything to stable.
        assert service_weights(cluster, ns, "gatewayAPI") == {
            "checkout": 100,
            "checkout-canary": 0,
            "checkout-baseline": 0,
        }
        assert status["weights"] == {"stable": 100, "canary": 0, "baseline": 0}
        rollouts.wait(
            lambda _: (
                rollouts.sizes().get("checkout-v002") == (0, 0)
                and rollouts.sizes().get("checkout-v001-baseline", (0, 0))[0] == 0
            ),
            what="canary and baseline scaled down",
        )
    finally:
        prom.stop()
