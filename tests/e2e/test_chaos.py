"""Chaos steps on a real control plane: a share of the canary's pods kept down while the
background analysis judges it, with a real Prometheus scraping a synthetic service whose traffic
follows the pods. A resilient canary passes; a fragile one (it errs while it has lost pods) is
rolled back; an operator killed mid-chaos removes the fault once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import prometheus
from harness.cluster import Cluster
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from herdsman.cluster.kube import ANALYSIS_TEMPLATES
from herdsman.simulate import Behaviour, TrafficSimulator, error_rate_query, replica_ratio

pytestmark = pytest.mark.e2e

FRAGILE = Behaviour(degraded=Behaviour(error_rate=0.5))


class Setup:
    def __init__(self, cluster: Cluster, rollouts: Rollouts, v2: Behaviour) -> None:
        self.rollouts = rollouts
        self.traffic = TrafficSimulator(
            replica_ratio(cluster.rest, rollouts.ns, "checkout"), {IMAGE_V2: v2}
        ).start()
        self.prom = prometheus.start([self.traffic.target], binary=prometheus.binary_or_skip())
        # Background analysis: the canary's error rate every 2 s for as long as it runs.
        metric = {
            "name": "error-rate",
            "interval": "2s",
            "initialDelay": "8s",
            "failureLimit": 0,
            "successCondition": "result[0] < 0.05",
            "failureCondition": "result[0] >= 0.05",
            "provider": {"prometheus": {"address": self.prom.url, "query": error_rate_query()}},
        }
        body = {
            "apiVersion": "herdsman.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "errors"},
            "spec": {"metrics": [metric]},
        }
        rollouts.rest.create(ANALYSIS_TEMPLATES.url(rollouts.ns), body)

    def close(self) -> None:
        self.prom.stop()
        self.traffic.stop()


@pytest.fixture
def setup(cluster: Cluster, rollouts: Rollouts) -> Iterator[Any]:
    made: list[Setup] = []

    def make(v2: Behaviour) -> Setup:
        made.append(Setup(cluster, rollouts, v2))
        return made[-1]

    yield make
    for s in made:
        s.close()


def chaos_rollout(duration: str) -> dict[str, Any]:
    return rollout(
        steps=[
            {"setWeight": 40},
            {"pause": {"duration": "8s"}},
            {"chaos": {"action": "killPods", "percent": 50, "duration": duration}},
            {"setWeight": 50},
        ],
        analysis={"templates": [{"templateName": "errors"}]},
    )


def injected(rollouts: Rollouts) -> dict[str, Any]:
    return rollouts.wait(
        lambda s: (
            (s.get("chaos") or {}).get("phase") == "Injected"
            and rollouts.sizes().get("checkout-v002") == (2, 2)
        ),
        timeout=60,
        what="the fault injected: 2 of the canary's 4 pods down",
    )


def test_a_resilient_canary_passes_its_chaos_step(
    operator: OperatorProcess, rollouts: Rollouts, setup: Any
) -> None:
    setup(Behaviour())
    rollouts.create(chaos_rollout("12s"))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    status = injected(rollouts)
    assert status["chaos"]["podsKilled"] == 2
    assert rollouts.sizes()["checkout-v001"][0] == 6  # the stable group keeps its pods

    status = rollouts.wait_healthy("checkout-v002", timeout=90)
    assert status["chaos"]["phase"] == "Removed"
    assert status["chaos"]["removedReason"] == "duration over"
    chaos_lines = [t for t in operator.transitions("checkout") if t.reason.startswith("Chaos")]
    assert [t.reason for t in chaos_lines] == ["ChaosInjected", "ChaosRemoved"]
    # One line per transition naming rollout, revision, step and weight (the removal is logged
    # by the pass that left the step, and names the chaos step in its message).
    assert all(t.revision == "2" and "step 3/4" in t.message for t in chaos_lines)
    assert (chaos_lines[0].step, chaos_lines[0].weight) == ("3/4", 40)


def test_a_fragile_canary_fails_its_chaos_step_and_is_rolled_back(
    operator: OperatorProcess, rollouts: Rollouts, setup: Any
) -> None:
    s = setup(FRAGILE)
    rollouts.create(chaos_rollout("30s"))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    injected(rollouts)
    started = time.monotonic()

    status = rollouts.wait_phase("Degraded", timeout=60)
    assert time.monotonic() - started < 30  # judged under the fault, not after it
    assert "error-rate" in status["message"]
    assert status["chaos"]["phase"] == "Removed"
    assert status["chaos"]["removedReason"] == "rollout aborted"
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v001"] == (10, 10), what="stable full")
    assert s.traffic.sent.get("checkout-v002", 0) > 0
    assert "ChaosRemoved" in operator.logged("checkout", "ChaosRemoved")


def test_the_fault_is_removed_by_an_operator_back_after_a_crash(
    operator: OperatorProcess, rollouts: Rollouts, setup: Any
) -> None:
    setup(Behaviour())
    rollouts.create(chaos_rollout("8s"))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    status = injected(rollouts)
    operator.kill()
    # Nobody is there to end it: the fault outlives its window until an operator is back...
    time.sleep(9)
    assert rollouts.sizes()["checkout-v002"][0] == 2
    assert rollouts.status()["chaos"]["phase"] == "Injected"

    operator.start()
    # ...and the first one back finds the window over in status and brings the pods back.
    status = rollouts.wait(
        lambda s: (s.get("chaos") or {}).get("phase") == "Removed",
        timeout=30,
        what="the fault removed",
    )
    assert status["chaos"]["removedReason"] == "duration over"
    rollouts.wait_healthy("checkout-v002", timeout=60)
    assert rollouts.sizes()["checkout-v002"] == (10, 10)
    assert operator.logged("checkout", "ChaosInjected").count("ChaosInjected") == 1
