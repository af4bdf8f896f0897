"""Argo's CRD-based routers on the real control plane: Ambassador (canary Mappings), and the
routers that followed it.

No gateway runs here: harness/routers.py reads each router's objects as its controller does and
the synthetic service's traffic follows them, so a weight the operator writes is the weight the
service gets. The weights of every step are read back from the router's own objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness import prometheus
from harness.cluster import Cluster, wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V1, IMAGE_V2, Rollouts, rollout
from harness.routers import (
    MAPPING,
    ROUTING,
    Event,
    Recorder,
    apisix_backends,
    apisix_routing,
    canary_weight_of,
    create_user_objects,
    http_route,
    ingress,
    install_crds,
    mapping,
    mesh_weights,
    service_weights,
    traefik_weights,
    weights_reader,
)
from herdsman.cli import actions
from herdsman.cluster.kube import ANALYSIS_TEMPLATES, REPLICA_SETS, ROLLOUTS, SERVICES
from herdsman.naming import LABEL_GROUP
from herdsman.simulate import Behaviour, TrafficSimulator, error_rate_query, replica_ratio
from herdsman.traffic.apisix import APISIX_ROUTES
from herdsman.traffic.appmesh import NO_CANARY, VIRTUAL_NODES, VIRTUAL_ROUTERS
from herdsman.traffic.gatewayapi import GRPC_ROUTES, HTTP_ROUTES, TCP_ROUTES
from herdsman.traffic.nginx import INGRESSES
from herdsman.traffic.traefik import TRAEFIK_SERVICES

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


def invalid_spec(rollouts: Rollouts) -> str | None:
    for c in rollouts.status().get("conditions", []):
        if c["type"] == "InvalidSpec" and c["status"] == "True":
            return str(c["message"])
    return None


def wake(rollouts: Rollouts) -> None:
    """Router objects are not watched (looked at again every 30s); touching the Rollout wakes
    the operator at once."""
    rollouts.rest.patch(
        ROLLOUTS.url(rollouts.ns, "checkout"),
        {"metadata": {"annotations": {"test/wake": str(time.monotonic())}}},
    )


def first(recorder: Recorder, what: str, predicate: Callable[[Event], bool]) -> Event:
    found = wait_until(lambda: recorder.first(predicate), timeout=10, what=what)
    assert isinstance(found, Event)
    return found


def assert_abort_writes_weight_zero_first(
    cluster: Cluster, rollouts: Rollouts, recorder: Recorder, kind: str
) -> None:
    """Abort: the router's object goes back to 100/0 before the canary Service moves back to
    stable or the canary shrinks."""
    ns = rollouts.ns
    actions.abort(rollouts.rest, ns, "checkout")
    rollouts.wait(
        lambda s: s.get("phase") == "Degraded" and s.get("weights", {}).get("canary") == 0,
        what="aborted",
    )
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v002"][0] == 0, what="canary scaled down")
    zero = first(recorder, f"{kind} at 0", lambda e: canary_weight_of(e, kind) == 0)
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


# --- Ambassador ------------------------------------------------------------------------------------


def test_ambassador_every_step_weight_lands_in_the_canary_mapping_and_the_service_follows_it(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "ambassador")
    rollouts.create(
        rollout(steps=STEPS, trafficRouting=ROUTING["ambassador"], scaleDownDelaySeconds=2)
    )
    rollouts.wait_healthy("checkout-v001")
    assert rollouts.rest.get(MAPPING.url(ns, "checkout-canary")) is None
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"),
        weights=weights_reader(cluster, ns, "ambassador"),
    ).start()
    simulators.append(traffic)

    rollouts.set_image(IMAGE_V2)
    for i, weight in enumerate(WEIGHTS):
        status = rollouts.wait_phase("Paused", step=f"{2 * i + 2}/6", timeout=60)
        canary = rollouts.rest.get(MAPPING.url(ns, "checkout-canary"))
        assert canary is not None
        assert canary["spec"] == {
            "hostname": "*",
            "prefix": "/",
            "rewrite": "/",
            "service": "checkout-canary:80",
            "weight": weight,
        }
        assert canary["metadata"]["ownerReferences"][0]["name"] == "checkout"
        assert service_weights(cluster, ns, "ambassador") == {
            "checkout": 100 - weight,
            "checkout-canary": weight,
        }
        assert status["weights"] == {"stable": 100 - weight, "canary": weight, "baseline": 0}
        time.sleep(0.5)
        share = measured_share(traffic, "checkout-v002")
        assert abs(share - weight / 100) < 0.08, (weight, share)
        actions.promote(rollouts.rest, ns, "checkout")

    rollouts.wait_healthy("checkout-v002", timeout=60)
    # Completed: the canary Mapping is gone, the user's Mapping was never written.
    wait_until(
        lambda: rollouts.rest.get(MAPPING.url(ns, "checkout-canary")) is None,
        what="the canary Mapping removed",
    )
    users = rollouts.rest.get(MAPPING.url(ns, "checkout"))
    assert users is not None
    assert users["metadata"]["generation"] == 1
    assert "weight" not in users["spec"]
    time.sleep(0.5)
    assert measured_share(traffic, "checkout-v002", 1.0) == 1.0
    assert not operator.errors()


def test_ambassador_abort_deletes_the_canary_mapping_first(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "ambassador")
    rollouts.create(
        rollout(
            steps=[{"setWeight": 30}, {"pause": {}}],
            trafficRouting=ROUTING["ambassador"],
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    assert service_weights(cluster, ns, "ambassador") == {"checkout": 70, "checkout-canary": 30}
    recorder = Recorder(cluster, ns, [MAPPING, SERVICES, REPLICA_SETS]).start()
    recorders.append(recorder)
    assert_abort_writes_weight_zero_first(cluster, rollouts, recorder, "ambassador")
    assert service_weights(cluster, ns, "ambassador") == {"checkout": 100}
    assert rollouts.rest.get(MAPPING.url(ns, "checkout-canary")) is None
    assert not operator.errors()


def test_ambassador_mapping_with_a_weight_holds_the_rollout_naming_the_field(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
) -> None:
    ns = rollouts.ns
    weighted = mapping()
    weighted["spec"]["weight"] = 50
    rollouts.rest.create(MAPPING.url(ns), weighted)
    rollouts.create(rollout(steps=STEPS, trafficRouting=ROUTING["ambassador"]))
    message = wait_until(lambda: invalid_spec(rollouts), timeout=30, what="InvalidSpec")
    assert message.startswith(
        "spec.strategy.canary.trafficRouting.ambassador.mappings: Mapping 'checkout' sets a weight"
    )
    assert rollouts.groups() == {}  # nothing moved
    # Fixed: the rollout starts.
    rollouts.rest.patch(MAPPING.url(ns, "checkout"), {"spec": {"weight": None}})
    wake(rollouts)
    rollouts.wait_healthy("checkout-v001")
    assert rollouts.rest.get(MAPPING.url(ns, "checkout-canary")) is None
    assert not operator.errors()


# --- Apache APISIX -----------------------------------------------------------------------------------


def apisix_main(rollouts: Rollouts) -> dict[str, int]:
    route = rollouts.rest.get(APISIX_ROUTES.url(rollouts.ns, "checkout"))
    assert route is not None
    return apisix_backends(route["spec"]["http"][0])


def test_apisix_every_step_weight_lands_in_the_route_backends_and_the_service_follows_it(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "apisix")
    rollouts.create(rollout(steps=STEPS, trafficRouting=ROUTING["apisix"], scaleDownDelaySeconds=2))
    rollouts.wait_healthy("checkout-v001")
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"), weights=weights_reader(cluster, ns, "apisix")
    ).start()
    simulators.append(traffic)

    rollouts.set_image(IMAGE_V2)
    for i, weight in enumerate(WEIGHTS):
        status = rollouts.wait_phase("Paused", step=f"{2 * i + 2}/6", timeout=60)
        assert apisix_main(rollouts) == {"checkout": 100 - weight, "checkout-canary": weight}
        assert status["weights"] == {"stable": 100 - weight, "canary": weight, "baseline": 0}
        time.sleep(0.5)
        share = measured_share(traffic, "checkout-v002")
        assert abs(share - weight / 100) < 0.08, (weight, share)
        actions.promote(rollouts.rest, ns, "checkout")

    rollouts.wait_healthy("checkout-v002", timeout=60)
    assert apisix_main(rollouts) == {"checkout": 100, "checkout-canary": 0}
    route = rollouts.rest.get(APISIX_ROUTES.url(ns, "checkout"))
    assert route is not None
    assert route["spec"]["http"][0]["match"] == {"paths": ["/*"], "hosts": ["shop.example"]}
    time.sleep(0.5)
    assert measured_share(traffic, "checkout-v002", 1.0) == 1.0
    assert not operator.errors()


def test_apisix_abort_puts_100_0_back_in_the_first_write(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "apisix")
    rollouts.create(
        rollout(
            steps=[{"setWeight": 30}, {"pause": {}}],
            trafficRouting=ROUTING["apisix"],
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    assert apisix_main(rollouts) == {"checkout": 70, "checkout-canary": 30}
    recorder = Recorder(cluster, ns, [APISIX_ROUTES, SERVICES, REPLICA_SETS]).start()
    recorders.append(recorder)
    assert_abort_writes_weight_zero_first(cluster, rollouts, recorder, "apisix")
    assert apisix_main(rollouts) == {"checkout": 100, "checkout-canary": 0}
    assert not operator.errors()


def test_apisix_header_route_in_a_step_with_scale_and_pause_as_argo_documents_it(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
) -> None:
    # Argo's own APISIX example: one step scales the canary, adds the header route and pauses.
    ns = rollouts.ns
    create_user_objects(cluster, ns, "apisix")
    match = [{"headerName": "trace", "headerValue": {"exact": "debug"}}]
    rollouts.create(
        rollout(
            steps=[
                {
                    "setCanaryScale": {"replicas": 2},
                    "setHeaderRoute": {"name": "set-header", "match": match},
                    "pause": {},
                },
                {"setWeight": 20},
                {"pause": {}},
            ],
            trafficRouting={**ROUTING["apisix"], "managedRoutes": [{"name": "set-header"}]},
            scaleDownDelaySeconds=2,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"),
        routing=apisix_routing(cluster, ns),
        tagged_headers={"trace": "debug"},
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

    rollouts.wait_phase("Paused", step="1/3")
    assert rollouts.sizes()["checkout-v002"] == (2, 2)
    header = rollouts.rest.get(APISIX_ROUTES.url(ns, "set-header"))
    assert header is not None
    assert header["metadata"]["ownerReferences"][0]["name"] == "checkout"
    assert header["spec"]["http"] == [
        {
            "name": "main",
            "priority": 1,
            "match": {
                "paths": ["/*"],
                "hosts": ["shop.example"],
                "exprs": [
                    {
                        "subject": {"scope": "Header", "name": "trace"},
                        "op": "Equal",
                        "value": "debug",
                    }
                ],
            },
            "backends": [{"serviceName": "checkout-canary", "servicePort": 80, "weight": 100}],
        }
    ]
    assert apisix_main(rollouts) == {"checkout": 100, "checkout-canary": 0}
    tagged, untagged = counted()
    assert tagged.get("checkout-v002", 0) > 20
    assert tagged.get("checkout-v001", 0) == 0
    assert untagged.get("checkout-v002", 0) == 0

    actions.promote(rollouts.rest, ns, "checkout")
    rollouts.wait_phase("Paused", step="3/3")
    assert apisix_main(rollouts) == {"checkout": 80, "checkout-canary": 20}
    assert rollouts.rest.get(APISIX_ROUTES.url(ns, "set-header")) is not None
    actions.promote(rollouts.rest, ns, "checkout")
    rollouts.wait_healthy("checkout-v002", timeout=60)
    # Completed: the header route went with the canary.
    wait_until(
        lambda: rollouts.rest.get(APISIX_ROUTES.url(ns, "set-header")) is None,
        what="the header route removed",
    )
    assert apisix_main(rollouts) == {"checkout": 100, "checkout-canary": 0}
    assert not operator.errors()


# --- AWS App Mesh ------------------------------------------------------------------------------------


def node_groups(rollouts: Rollouts) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("checkout-stable", "checkout-canary"):
        node = rollouts.rest.get(VIRTUAL_NODES.url(rollouts.ns, name))
        assert node is not None
        out[name] = node["spec"]["podSelector"]["matchLabels"].get(LABEL_GROUP)
    return out


def test_app_mesh_every_step_weight_lands_in_the_virtual_router_and_the_service_follows_it(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "appMesh")
    rollouts.create(
        rollout(steps=STEPS, trafficRouting=ROUTING["appMesh"], scaleDownDelaySeconds=2)
    )
    rollouts.wait_healthy("checkout-v001")
    wait_until(
        lambda: (
            node_groups(rollouts)
            == {"checkout-stable": "checkout-v001", "checkout-canary": NO_CANARY}
        ),
        what="the VirtualNodes pointed at the groups",
    )
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"), weights=weights_reader(cluster, ns, "appMesh")
    ).start()
    simulators.append(traffic)

    rollouts.set_image(IMAGE_V2)
    for i, weight in enumerate(WEIGHTS):
        status = rollouts.wait_phase("Paused", step=f"{2 * i + 2}/6", timeout=60)
        vrouter = rollouts.rest.get(VIRTUAL_ROUTERS.url(ns, "checkout"))
        assert mesh_weights(vrouter) == {
            "checkout-stable": 100 - weight,
            "checkout-canary": weight,
        }
        assert node_groups(rollouts) == {
            "checkout-stable": "checkout-v001",
            "checkout-canary": "checkout-v002",
        }
        assert status["weights"] == {"stable": 100 - weight, "canary": weight, "baseline": 0}
        time.sleep(0.5)
        share = measured_share(traffic, "checkout-v002")
        assert abs(share - weight / 100) < 0.08, (weight, share)
        actions.promote(rollouts.rest, ns, "checkout")

    rollouts.wait_healthy("checkout-v002", timeout=60)
    assert mesh_weights(rollouts.rest.get(VIRTUAL_ROUTERS.url(ns, "checkout"))) == {
        "checkout-stable": 100,
        "checkout-canary": 0,
    }
    wait_until(
        lambda: (
            node_groups(rollouts)
            == {"checkout-stable": "checkout-v002", "checkout-canary": NO_CANARY}
        ),
        what="the stable VirtualNode on the new stable group",
    )
    time.sleep(0.5)
    assert measured_share(traffic, "checkout-v002", 1.0) == 1.0
    assert not operator.errors()


def test_app_mesh_abort_puts_100_0_back_in_the_first_write(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    create_user_objects(cluster, ns, "appMesh")
    rollouts.create(
        rollout(
            steps=[{"setWeight": 30}, {"pause": {}}],
            trafficRouting=ROUTING["appMesh"],
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    assert service_weights(cluster, ns, "appMesh") == {"checkout": 70, "checkout-canary": 30}
    recorder = Recorder(cluster, ns, [VIRTUAL_ROUTERS, SERVICES, REPLICA_SETS]).start()
    recorders.append(recorder)
    assert_abort_writes_weight_zero_first(cluster, rollouts, recorder, "appMesh")
    assert service_weights(cluster, ns, "appMesh") == {"checkout": 100, "checkout-canary": 0}
    assert not operator.errors()


# --- Argo's Gateway API plugin block ---------------------------------------------------------------------


def test_argo_gateway_api_plugin_block_moves_every_http_route_and_abort_returns_them_first(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    recorders: list[Recorder],
) -> None:
    # An Argo manifest's plugin block, unchanged: two HTTPRoutes, moved together.
    ns = rollouts.ns
    names = ("checkout", "checkout-internal")
    for name in names:
        cluster.rest.create(HTTP_ROUTES.url(ns), http_route(name))
    plugin = {
        "argoproj-labs/gatewayAPI": {
            "httpRoutes": [{"name": n, "useHeaderRoutes": True} for n in names],
            "namespace": ns,
        }
    }
    rollouts.create(
        rollout(
            steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}],
            trafficRouting={"plugins": plugin},
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)

    def weights(name: str) -> dict[str, int]:
        route = rollouts.rest.get(HTTP_ROUTES.url(ns, name))
        assert route is not None
        return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}

    for step, weight in (("2/4", 20), ("4/4", 60)):
        status = rollouts.wait_phase("Paused", step=step, timeout=60)
        for name in names:
            assert weights(name) == {"checkout": 100 - weight, "checkout-canary": weight}
        assert status["weights"]["canary"] == weight
        if weight == 20:
            actions.promote(rollouts.rest, ns, "checkout")
    recorder = Recorder(cluster, ns, [HTTP_ROUTES, SERVICES, REPLICA_SETS]).start()
    recorders.append(recorder)
    assert_abort_writes_weight_zero_first(cluster, rollouts, recorder, "gatewayAPI")
    for name in names:
        assert weights(name) == {"checkout": 100, "checkout-canary": 0}
    assert not operator.errors()


def test_argo_gateway_api_plugin_block_weights_grpc_and_tcp_routes(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
) -> None:
    ns = rollouts.ns
    for path, kind in ((GRPC_ROUTES, "GRPCRoute"), (TCP_ROUTES, "TCPRoute")):
        body = http_route()
        body["apiVersion"] = f"gateway.networking.k8s.io/{path.version}"
        body["kind"] = kind
        for rule in body["spec"]["rules"]:
            rule.pop("matches", None)
        cluster.rest.create(path.url(ns), body)
    plugin = {"argoproj-labs/gatewayAPI": {"grpcRoute": "checkout", "tcpRoute": "checkout"}}
    rollouts.create(
        rollout(
            steps=[{"setWeight": 30}, {"pause": {}}],
            trafficRouting={"plugins": plugin},
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2", timeout=60)

    def weights(path: Any) -> dict[str, int]:
        route = rollouts.rest.get(path.url(ns, "checkout"))
        assert route is not None
        return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}

    for path in (GRPC_ROUTES, TCP_ROUTES):
        assert weights(path) == {"checkout": 70, "checkout-canary": 30}
    actions.abort(rollouts.rest, ns, "checkout")
    rollouts.wait(
        lambda s: s.get("phase") == "Degraded" and s.get("weights", {}).get("canary") == 0,
        what="aborted",
    )
    for path in (GRPC_ROUTES, TCP_ROUTES):
        assert weights(path) == {"checkout": 100, "checkout-canary": 0}
    assert not operator.errors()


# --- Traefik -------------------------------------------------------------------------------------------


def test_traefik_every_step_weight_lands_in_the_traefik_service_and_abort_puts_100_0_back_first(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    url = TRAEFIK_SERVICES[0].url(ns, "checkout")
    create_user_objects(cluster, ns, "traefik")
    rollouts.create(
        rollout(
            steps=[{"setWeight": 15}, {"pause": {}}, {"setWeight": 55}, {"pause": {}}],
            trafficRouting=ROUTING["traefik"],
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"), weights=weights_reader(cluster, ns, "traefik")
    ).start()
    simulators.append(traffic)
    rollouts.set_image(IMAGE_V2)
    for step, weight in (("2/4", 15), ("4/4", 55)):
        rollouts.wait_phase("Paused", step=step, timeout=60)
        held = traefik_weights(rollouts.rest.get(url))
        assert held == {"checkout": 100 - weight, "checkout-canary": weight}
        time.sleep(0.5)
        share = measured_share(traffic, "checkout-v002")
        assert abs(share - weight / 100) < 0.08, (weight, share)
        if weight == 15:
            actions.promote(rollouts.rest, ns, "checkout")
    recorder = Recorder(cluster, ns, [TRAEFIK_SERVICES[0], SERVICES, REPLICA_SETS]).start()
    recorders.append(recorder)
    assert_abort_writes_weight_zero_first(cluster, rollouts, recorder, "traefik")
    assert traefik_weights(rollouts.rest.get(url)) == {"checkout": 100, "checkout-canary": 0}
    assert not operator.errors()


# --- nginx: several stable Ingresses, Argo's annotations ----------------------------------------------------


def test_nginx_stable_ingresses_each_get_a_canary_ingress_with_argos_annotations(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    recorders: list[Recorder],
) -> None:
    ns = rollouts.ns
    names = ("checkout", "checkout-internal")
    for name in names:
        cluster.rest.create(INGRESSES.url(ns), ingress(name))
    routing = {
        "nginx": {
            "stableIngresses": list(names),
            "additionalIngressAnnotations": {"canary-by-header": "X-Canary"},
            "canaryIngressAnnotations": {"team.example/owner": "shop"},
        }
    }
    rollouts.create(
        rollout(
            steps=[{"setWeight": 25}, {"pause": {}}],
            trafficRouting=routing,
            abortScaleDownDelaySeconds=0,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2", timeout=60)
    for name in names:
        canary = rollouts.rest.get(INGRESSES.url(ns, f"checkout-{name}-canary"))
        assert canary is not None
        notes = canary["metadata"]["annotations"]
        assert notes["nginx.ingress.kubernetes.io/canary-weight"] == "25"
        assert notes["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary"
        assert notes["team.example/owner"] == "shop"
        paths = canary["spec"]["rules"][0]["http"]["paths"]
        assert paths[0]["backend"]["service"]["name"] == "checkout-canary"
    recorder = Recorder(cluster, ns, [INGRESSES, SERVICES, REPLICA_SETS]).start()
    recorders.append(recorder)
    assert_abort_writes_weight_zero_first(cluster, rollouts, recorder, "nginx")
    for name in names:
        assert rollouts.rest.get(INGRESSES.url(ns, f"checkout-{name}-canary")) is None
    assert not operator.errors()


# --- a judged canary behind a new router --------------------------------------------------------------------


def test_a_failing_analysis_behind_apisix_takes_its_weight_to_zero_first(
    router_crds: None,
    cluster: Cluster,
    operator: OperatorProcess,
    rollouts: Rollouts,
    simulators: list[TrafficSimulator],
    recorders: list[Recorder],
) -> None:
    # The synthetic service gets its split from the ApisixRoute; Prometheus scrapes it; the
    # canary's errors, seen through its 20%, fail the analysis and the route goes back first.
    ns = rollouts.ns
    create_user_objects(cluster, ns, "apisix")
    traffic = TrafficSimulator(
        replica_ratio(cluster.rest, ns, "checkout"),
        {IMAGE_V1: Behaviour(), IMAGE_V2: Behaviour(error_rate=0.3)},
        weights=weights_reader(cluster, ns, "apisix"),
    ).start()
    simulators.append(traffic)
    prom = prometheus.start([traffic.target], binary=prometheus.binary_or_skip())
    try:
        metric = {
            "name": "error-rate",
            "provider": {"prometheus": {"address": prom.url, "query": error_rate_query()}},
            "interval": "2s",
            "count": 3,
            "initialDelay": "8s",
            "successCondition": "result[0] < 0.05",
            "failureCondition": "result[0] >= 0.05",
        }
        rollouts.rest.create(
            ANALYSIS_TEMPLATES.url(ns),
            {
                "apiVersion": "herdsman.dev/v1alpha1",
                "kind": "AnalysisTemplate",
                "metadata": {"name": "errors"},
                "spec": {"metrics": [metric]},
            },
        )
        rollouts.create(
            rollout(
                steps=[
                    {"setWeight": 20},
                    {"analysis": {"templates": [{"templateName": "errors"}]}},
                    {"setWeight": 50},
                ],
                trafficRouting=ROUTING["apisix"],
                abortScaleDownDelaySeconds=0,
            )
        )
        rollouts.wait_healthy("checkout-v001")
        recorder = Recorder(cluster, ns, [APISIX_ROUTES, SERVICES, REPLICA_SETS]).start()
        recorders.append(recorder)
        rollouts.set_image(IMAGE_V2)
        status = rollouts.wait_phase("Degraded", timeout=90)
        assert "error-rate" in status["message"]
        assert apisix_main(rollouts) == {"checkout": 100, "checkout-canary": 0}
        assert traffic.sent.get("checkout-v002", 0) > 0  # it served while measured
        time.sleep(0.5)
        assert measured_share(traffic, "checkout-v002", 1.5) == 0.0
        seen = [w for e in recorder.ordered() if (w := canary_weight_of(e, "apisix")) is not None]
        assert [w for i, w in enumerate(seen) if i == 0 or seen[i - 1] != w] == [20, 0]
    finally:
        prom.stop()
