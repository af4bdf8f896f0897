"""Argo Rollout fields with their Argo meaning, on the real control plane: antiAffinity in the
new group's pod template, minPodsPerReplicaSet and scaleDownDelayRevisionLimit with a router,
selector.matchExpressions on every server group, weights out of maxTrafficWeight through nginx,
replicaProgressThreshold leaving a step whose canary cannot all be scheduled, and a step that
combines setCanaryScale with setHeaderRoute (Argo's combination rules)."""

from __future__ import annotations

import pytest

from harness.cluster import Cluster, wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, IMAGE_V3, Rollouts, rollout
from harness.routers import NGINX, ROUTING, create_user_objects, install_crds
from herdsman.cli import actions
from herdsman.cluster.kube import ROLLOUTS
from herdsman.naming import LABEL_GROUP
from herdsman.traffic.gatewayapi import HTTP_ROUTES
from herdsman.traffic.nginx import INGRESSES

pytestmark = pytest.mark.e2e


def ok(operator: OperatorProcess) -> bool:
    return not [e for e in operator.errors() if "storage is (re)initializing" not in e]


def test_anti_affinity_keeps_the_canary_off_the_stable_groups_nodes(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rule = {"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 50}}
    rollouts.create(
        rollout(replicas=2, steps=[{"setWeight": 50}, {"pause": {}}], antiAffinity=rule)
    )
    rollouts.wait_healthy("checkout-v001")
    first = rollouts.groups()["checkout-v001"]["spec"]["template"]["spec"]
    assert "affinity" not in first
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    spec = rollouts.groups()["checkout-v002"]["spec"]["template"]["spec"]
    assert spec["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ] == [
        {
            "weight": 50,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": {LABEL_GROUP: "checkout-v001"}},
                "topologyKey": "kubernetes.io/hostname",
            },
        }
    ]
    # The pods the API server made from it carry the rule too.
    pod = next(
        p for p in rollouts.pods() if p["metadata"]["labels"][LABEL_GROUP] == "checkout-v002"
    )
    assert "podAntiAffinity" in pod["spec"]["affinity"]
    assert ok(operator)


def test_min_pods_and_the_warm_revision_limit_with_a_router(
    cluster: Cluster, operator: OperatorProcess, rollouts: Rollouts
) -> None:
    install_crds(cluster)
    create_user_objects(cluster, rollouts.ns, "gatewayAPI")
    rollouts.create(
        rollout(
            replicas=4,
            steps=[{"setWeight": 10}, {"pause": {}}],
            trafficRouting=ROUTING["gatewayAPI"],
            minPodsPerReplicaSet=2,
            scaleDownDelaySeconds=300,
            scaleDownDelayRevisionLimit=1,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    for image, group in ((IMAGE_V2, "checkout-v002"), (IMAGE_V3, "checkout-v003")):
        rollouts.set_image(image)
        rollouts.wait_phase("Paused", step="2/2")
        # 10% of 4 pods is 1; minPodsPerReplicaSet lifts the canary to 2.
        assert rollouts.sizes()[group] == (2, 2)
        actions.promote(rollouts.rest, rollouts.ns, "checkout", full=True)
        rollouts.wait_healthy(group)
    # Two previous groups would wait out their 300s delay; the limit keeps only the newest.
    wait_until(
        lambda: rollouts.sizes().get("checkout-v001") == (0, 0),
        timeout=30,
        what="checkout-v001 scaled down at once",
        describe=lambda: str(rollouts.sizes()),
    )
    assert rollouts.sizes()["checkout-v002"] == (4, 4)
    assert ok(operator)


def test_a_selector_with_match_expressions_rolls_out_and_services_follow(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    body = rollout(replicas=2, steps=[{"setWeight": 50}, {"pause": {}}])
    body["spec"]["selector"]["matchExpressions"] = [
        {"key": "tier", "operator": "In", "values": ["web", "edge"]},
        {"key": "legacy", "operator": "DoesNotExist"},
    ]
    body["spec"]["template"]["metadata"]["labels"]["tier"] = "web"
    rollouts.create(body)
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    status = rollouts.wait_phase("Paused", step="2/2")
    # The API server took both groups: their selectors carry the expressions and their pods
    # meet them; an HPA reads the same selector from status.
    for name, rs in rollouts.groups().items():
        # (The API server leaves an empty `values` out.)
        assert rs["spec"]["selector"]["matchExpressions"] == [
            {"key": "tier", "operator": "In", "values": ["web", "edge"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ], name
    # By replica ratio, 50% of two pods: one each.
    assert rollouts.sizes() == {"checkout-v001": (1, 1), "checkout-v002": (1, 1)}
    assert status["selector"] == "app=checkout,tier in (edge,web),!legacy"
    assert rollouts.selector("checkout")[LABEL_GROUP] == "checkout-v001"
    assert rollouts.selector("checkout-canary")[LABEL_GROUP] == "checkout-v002"
    actions.promote(rollouts.rest, rollouts.ns, "checkout", full=True)
    rollouts.wait_healthy("checkout-v002")
    assert rollouts.selector("checkout")[LABEL_GROUP] == "checkout-v002"
    assert ok(operator)


def test_max_traffic_weight_gives_nginx_weights_out_of_its_total(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    create_user_objects(rollouts.cluster, rollouts.ns, "nginx")
    routing = {**ROUTING["nginx"], "maxTrafficWeight": 1000}
    rollouts.create(
        rollout(replicas=10, steps=[{"setWeight": 5}, {"pause": {}}], trafficRouting=routing)
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    status = rollouts.wait_phase("Paused", step="2/2")
    # 5 of 1000 is half a percent: one pod of ten, and exactly that in the canary Ingress.
    assert rollouts.sizes()["checkout-v002"] == (1, 1)
    assert status["weights"] == {"stable": 995, "canary": 5, "baseline": 0}
    canary = rollouts.rest.get(INGRESSES.url(rollouts.ns, "checkout-checkout-canary"))
    assert canary is not None
    notes = canary["metadata"]["annotations"]
    assert notes[f"{NGINX}/canary-weight"] == "5"
    assert notes[f"{NGINX}/canary-weight-total"] == "1000"
    actions.promote(rollouts.rest, rollouts.ns, "checkout", full=True)
    rollouts.wait_healthy("checkout-v002")
    assert rollouts.status()["weights"]["stable"] == 1000
    assert ok(operator)


def test_replica_progress_threshold_leaves_a_step_with_part_of_the_canary_up(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(
        rollout(
            replicas=10,
            steps=[{"setWeight": 50}, {"pause": {}}],
            replicaProgressThreshold={"type": "Pod", "value": 3},
        )
    )
    rollouts.wait_healthy("checkout-v001")
    # The new revision's pods refuse to share a node, and the cluster has three: of the five
    # pods setWeight 50 asks for, three run and two stay Pending for good.
    template = rollouts.get()["spec"]["template"]
    template["metadata"]["labels"]["slot"] = "one-per-node"
    template["spec"]["containers"][0]["image"] = IMAGE_V2
    template["spec"]["affinity"] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"slot": "one-per-node"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    rollouts.rest.patch(ROLLOUTS.url(rollouts.ns, "checkout"), {"spec": {"template": template}})
    rollouts.wait_phase("Paused", step="2/2", timeout=90)
    assert rollouts.sizes()["checkout-v002"] == (5, 3)
    assert ok(operator)


def test_a_step_combining_set_canary_scale_with_set_header_route_does_both(
    cluster: Cluster, operator: OperatorProcess, rollouts: Rollouts
) -> None:
    install_crds(cluster)
    create_user_objects(cluster, rollouts.ns, "gatewayAPI")
    beta = {"headerName": "x-beta", "headerValue": {"exact": "yes"}}
    rollouts.create(
        rollout(
            replicas=4,
            steps=[
                {
                    "setCanaryScale": {"replicas": 2},
                    "setHeaderRoute": {"name": "beta", "match": [beta]},
                },
                {"pause": {}},
            ],
            trafficRouting={**ROUTING["gatewayAPI"], "managedRoutes": [{"name": "beta"}]},
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    assert rollouts.sizes()["checkout-v002"] == (2, 2)
    route = cluster.rest.get(HTTP_ROUTES.url(rollouts.ns, "checkout"))
    assert route is not None
    matched = [
        rule
        for rule in route["spec"]["rules"]
        for m in rule.get("matches") or []
        if any(h.get("name") == "x-beta" for h in m.get("headers") or [])
    ]
    assert len(matched) == 1
    assert [b["name"] for b in matched[0]["backendRefs"] if b.get("weight", 1)] == [
        "checkout-canary"
    ]
    actions.promote(rollouts.rest, rollouts.ns, "checkout", full=True)
    rollouts.wait_healthy("checkout-v002")
    assert ok(operator)
