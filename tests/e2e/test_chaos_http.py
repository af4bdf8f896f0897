"""A chaos step's httpFault on a real control plane with the Istio VirtualService CRD: the fault
is on a route of the canary's own while the step runs — read back from the API server — and
gone after the step, after an abort, and after an operator killed mid-fault comes back. The
synthetic service plays Istio's data plane (harness/routers.py): tagged requests take the fault
route, so a canary judged under a 503 abort fault really fails and is rolled back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import prometheus
from harness.cluster import Cluster, wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from harness.routers import (
    ROUTING,
    VS,
    create_user_objects,
    install_crds,
    istio_faults,
    istio_routing,
)
from herdsman.cli import actions
from herdsman.cluster.kube import ANALYSIS_TEMPLATES, EVENTS
from herdsman.simulate import TrafficSimulator, replica_ratio

pytestmark = pytest.mark.e2e

CHAOS_ROUTE = "herdsman-checkout-chaos-fault"
TAG = {"x-herdsman-chaos": "checkout"}
DELAY = {"delay": {"fixedDelay": "200ms", "percentage": {"value": 50}}}
ABORT = {"abort": {"httpStatus": 503, "percentage": {"value": 60}}}


def server_errors_query(group: str = "{{rollout.canaryGroup}}") -> str:
    """The share of `group`'s requests answered 5xx over 10 s (an abort's 503 counts)."""
    return (
        f'(sum(rate(herdsman_demo_requests_total{{group="{group}",code=~"5.."}}[10s]))'
        " or vector(0))"
        f' / sum(rate(herdsman_demo_requests_total{{group="{group}"}}[10s]))'
    )


class Setup:
    def __init__(self, cluster: Cluster, rollouts: Rollouts) -> None:
        ns = rollouts.ns
        create_user_objects(cluster, ns, "istio")
        # A third of the requests carry the chaos header (the edge's experiment share).
        self.traffic = TrafficSimulator(
            replica_ratio(cluster.rest, ns, "checkout"),
            routing=istio_routing(cluster, ns),
            faults=istio_faults(cluster, ns),
            tagged_headers=TAG,
            tagged_share=0.3,
        ).start()
        self.prom = prometheus.start([self.traffic.target], binary=prometheus.binary_or_skip())
        metric = {
            "name": "server-errors",
            "interval": "2s",
            # Prometheus has a canary series to rate some 7 s after the canary's first request.
            "initialDelay": "10s",
            "failureLimit": 0,
            "inconclusiveLimit": 3,
            "successCondition": "result[0] < 0.05",
            "failureCondition": "result[0] >= 0.05",
            "provider": {"prometheus": {"address": self.prom.url, "query": server_errors_query()}},
        }
        body = {
            "apiVersion": "herdsman.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "errors"},
            "spec": {"metrics": [metric]},
        }
        rollouts.rest.create(ANALYSIS_TEMPLATES.url(ns), body)

    def close(self) -> None:
        self.prom.stop()
        self.traffic.stop()


@pytest.fixture
def setup(cluster: Cluster, rollouts: Rollouts) -> Iterator[Setup]:
    install_crds(cluster)
    s = Setup(cluster, rollouts)
    yield s
    s.close()


def fault_rollout(fault: dict[str, Any], duration: str) -> dict[str, Any]:
    return rollout(
        steps=[
            {"setWeight": 40},
            {"pause": {"duration": "10s"}},
            {"chaos": {"action": "httpFault", "duration": duration, "httpFault": fault}},
            {"setWeight": 60},
        ],
        analysis={"templates": [{"templateName": "errors"}]},
        trafficRouting=ROUTING["istio"],
    )


def http_routes(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    vs = cluster.rest.get(VS.url(ns, "checkout"))
    assert vs is not None
    return list(vs["spec"].get("http") or [])


def chaos_route(cluster: Cluster, ns: str) -> dict[str, Any] | None:
    return next((r for r in http_routes(cluster, ns) if r.get("name") == CHAOS_ROUTE), None)


def injected(rollouts: Rollouts, cluster: Cluster) -> dict[str, Any]:
    status = rollouts.wait(
        lambda s: (s.get("chaos") or {}).get("phase") == "Injected",
        timeout=60,
        what="the httpFault injected",
    )
    ns = rollouts.ns
    # Read back from the API server: the fault is on a route of the canary's own, first.
    routes = http_routes(cluster, ns)
    assert routes[0]["name"] == CHAOS_ROUTE
    assert routes[0]["match"] == [{"headers": {"x-herdsman-chaos": {"exact": "checkout"}}}]
    assert routes[0]["route"] == [{"destination": {"host": "checkout-canary"}, "weight": 100}]
    # ...and the managed route, which carries the stable's requests, is as it was but weights.
    primary = next(r for r in routes if r.get("name") == "primary")
    assert "fault" not in primary
    assert [d["weight"] for d in primary["route"]] == [60, 40]
    return status


def test_the_fault_is_on_the_canarys_route_during_the_step_and_gone_after(
    cluster: Cluster, operator: OperatorProcess, rollouts: Rollouts, setup: Setup
) -> None:
    ns = rollouts.ns
    rollouts.create(fault_rollout(DELAY, "12s"))
    rollouts.wait_healthy("checkout-v001")
    assert chaos_route(cluster, ns) is None
    rollouts.set_image(IMAGE_V2)
    status = injected(rollouts, cluster)
    route = chaos_route(cluster, ns)
    assert route is not None
    assert route["fault"] == {"delay": {"fixedDelay": "0.2s", "percentage": {"value": 50}}}
    assert status["chaos"]["httpFault"]["headers"] == TAG
    # The synthetic service sees it: tagged requests now reach the canary alone.
    before = dict(setup.traffic.sent_tagged)
    time.sleep(2)
    grew = {g for g, n in setup.traffic.sent_tagged.items() if n > before.get(g, 0)}
    assert grew == {"checkout-v002"}

    status = rollouts.wait_healthy("checkout-v002", timeout=90)
    assert status["chaos"]["phase"] == "Removed"
    assert status["chaos"]["removedReason"] == "duration over"
    assert chaos_route(cluster, ns) is None
    assert [r["name"] for r in http_routes(cluster, ns)] == ["primary"]
    lines = [t for t in operator.transitions("checkout") if t.reason.startswith("Chaos")]
    assert [t.reason for t in lines] == ["ChaosInjected", "ChaosRemoved"]
    assert "httpFault: delay 200ms on 50%" in lines[0].message
    assert (lines[0].step, lines[0].weight) == ("3/4", 40)

    def events() -> list[str]:
        return sorted(
            {
                e["reason"]
                for e in cluster.rest.list(EVENTS.url(ns))
                if e["involvedObject"]["name"] == "checkout" and e["reason"].startswith("Chaos")
            }
        )

    # Events are sent apart from the pass that announced them: a moment after the status.
    wait_until(lambda: len(events()) >= 2, timeout=10, what="the chaos Events")
    assert events() == ["ChaosInjected", "ChaosRemoved"]


def test_a_canary_failing_under_a_503_abort_fault_is_rolled_back_and_the_fault_removed(
    cluster: Cluster, operator: OperatorProcess, rollouts: Rollouts, setup: Setup
) -> None:
    ns = rollouts.ns
    rollouts.create(fault_rollout(ABORT, "40s"))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    injected(rollouts, cluster)
    started = time.monotonic()

    status = rollouts.wait_phase("Degraded", timeout=60)
    assert time.monotonic() - started < 40  # judged under the fault, not after it
    assert "server-errors" in status["message"]
    assert status["chaos"]["phase"] == "Removed"
    assert status["chaos"]["removedReason"] == "rollout aborted"
    # Gone in the VirtualService, and every request back to stable.
    assert chaos_route(cluster, ns) is None
    primary = http_routes(cluster, ns)[0]
    assert [d["weight"] for d in primary["route"]] == [100, 0]
    # The canary's errors were the injected 503s: it answers every request itself with 200.
    assert setup.traffic.sent.get("checkout-v002", 0) > 0
    assert "ChaosRemoved" in operator.logged("checkout", "ChaosRemoved")


def test_the_fault_is_removed_by_an_operator_back_after_a_crash(
    cluster: Cluster, operator: OperatorProcess, rollouts: Rollouts, setup: Setup
) -> None:
    ns = rollouts.ns
    rollouts.create(fault_rollout(DELAY, "8s"))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    injected(rollouts, cluster)
    operator.kill()
    # Nobody is there to end it: the route outlives its window until an operator is back...
    time.sleep(9)
    assert chaos_route(cluster, ns) is not None
    assert rollouts.status()["chaos"]["phase"] == "Injected"

    operator.start()
    # ...and the first one back finds the window over in status and removes the route.
    status = rollouts.wait(
        lambda s: (s.get("chaos") or {}).get("phase") == "Removed",
        timeout=30,
        what="the fault removed",
    )
    assert status["chaos"]["removedReason"] == "duration over"
    assert chaos_route(cluster, ns) is None
    rollouts.wait_healthy("checkout-v002", timeout=60)
    assert operator.logged("checkout", "ChaosInjected").count("ChaosInjected") == 1


def test_a_pause_removes_the_fault_and_keeps_the_weights(
    cluster: Cluster, operator: OperatorProcess, rollouts: Rollouts, setup: Setup
) -> None:
    ns = rollouts.ns
    rollouts.create(fault_rollout(DELAY, "60s"))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    injected(rollouts, cluster)
    actions.pause(rollouts.rest, ns, "checkout")  # `kubectl herdsman pause`

    status = rollouts.wait(
        lambda s: (s.get("chaos") or {}).get("phase") == "Removed",
        timeout=30,
        what="the fault removed by the pause",
    )
    assert status["chaos"]["removedReason"] == "rollout paused"
    assert chaos_route(cluster, ns) is None
    # Nothing else moves while paused: the canary keeps its 40%.
    assert [d["weight"] for d in http_routes(cluster, ns)[0]["route"]] == [60, 40]
    # Resumed within the step's window: not injected again.
    actions.resume(rollouts.rest, ns, "checkout")
    time.sleep(3)
    assert chaos_route(cluster, ns) is None
    assert operator.logged("checkout", "ChaosInjected").count("ChaosInjected") == 1
