"""Canary analysis with real parts: a real Prometheus scraping a synthetic service whose traffic
follows the weights the operator sets — so a rollback really takes the canary's traffic away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import prometheus
from harness.cluster import Cluster, wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V1, IMAGE_V2, Rollouts, rollout
from herdsman.cli import actions
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES
from herdsman.simulate import (
    Behaviour,
    TrafficSimulator,
    error_rate_query,
    mean_latency_query,
    replica_ratio,
)

pytestmark = pytest.mark.e2e


class Setup:
    """A rollout's namespace with a traffic simulator and a Prometheus that scrapes it."""

    def __init__(
        self, cluster: Cluster, rollouts: Rollouts, behaviours: dict[str, Behaviour]
    ) -> None:
        self.rollouts = rollouts
        self.traffic = TrafficSimulator(
            replica_ratio(cluster.rest, rollouts.ns, "checkout"), behaviours
        ).start()
        self.prom = prometheus.start([self.traffic.target], binary=prometheus.binary_or_skip())

    def template(self, name: str, metrics: list[dict[str, Any]], **spec: Any) -> None:
        body = {
            "apiVersion": "herdsman.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": name},
            "spec": {"metrics": metrics, **spec},
        }
        self.rollouts.rest.create(ANALYSIS_TEMPLATES.url(self.rollouts.ns), body)

    def metric(self, name: str, query: str, **fields: Any) -> dict[str, Any]:
        return {
            "name": name,
            "provider": {"prometheus": {"address": self.prom.url, "query": query}},
            **fields,
        }

    def run(self, name: str) -> dict[str, Any]:
        body = self.rollouts.rest.get(ANALYSIS_RUNS.url(self.rollouts.ns, name))
        assert body is not None, f"no AnalysisRun {name}"
        return body

    def close(self) -> None:
        self.prom.stop()
        self.traffic.stop()


@pytest.fixture
def setup(request: pytest.FixtureRequest, cluster: Cluster, rollouts: Rollouts) -> Iterator[Any]:
    made: list[Setup] = []

    def make(behaviours: dict[str, Behaviour]) -> Setup:
        s = Setup(cluster, rollouts, behaviours)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def error_rate(s: Setup, **fields: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "interval": "2s",
        "count": 3,
        # The canary's first requests need a few scrapes before Prometheus has a rate.
        "initialDelay": "8s",
        "successCondition": "result[0] < 0.05",
        "failureCondition": "result[0] >= 0.05",
    }
    return s.metric("error-rate", error_rate_query(), **{**options, **fields})


def test_a_healthy_canary_is_promoted_through_its_analysis(
    operator: OperatorProcess, rollouts: Rollouts, setup: Any
) -> None:
    s = setup({IMAGE_V1: Behaviour(), IMAGE_V2: Behaviour()})
    s.template("errors", [error_rate(s)])
    rollouts.create(
        rollout(
            steps=[
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": "errors"}]}},
                {"setWeight": 50},
            ]
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)

    rollouts.wait_healthy("checkout-v002", timeout=90)
    run = s.run("checkout-v002-step1-a0")
    assert run["status"]["phase"] == "Successful"
    result = run["status"]["metricResults"][0]
    assert result["successful"] == 3
    assert all(m["phase"] == "Successful" for m in result["measurements"])
    assert s.traffic.sent.get("checkout-v002", 0) > 0
    assert "AnalysisPassed" in operator.logged("checkout", "AnalysisPassed")


def test_a_canary_whose_error_rate_rises_is_rolled_back(
    operator: OperatorProcess, rollouts: Rollouts, setup: Any
) -> None:
    s = setup({IMAGE_V1: Behaviour(), IMAGE_V2: Behaviour(error_rate=0.2)})
    s.template("errors", [error_rate(s)])
    rollouts.create(
        rollout(
            steps=[
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": "errors"}]}},
                {"setWeight": 50},
            ]
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)

    status = rollouts.wait_phase("Degraded", timeout=90)
    assert "error-rate" in status["message"]
    assert status["weights"]["canary"] == 0
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v002"] == (0, 0), what="canary drained")
    # The loop is closed: the canary stops receiving traffic once it is gone.
    sent = s.traffic.sent.get("checkout-v002", 0)
    time.sleep(1.5)
    assert s.traffic.sent.get("checkout-v002", 0) == sent
    aborted = operator.wait_for("RolloutAborted", rollout="checkout")
    assert "error-rate" in aborted.message
    assert s.run("checkout-v002-step1-a0")["status"]["phase"] == "Failed"


# Long enough for both groups to have served and been scraped for over 10 s: with 10 s, a
# release that moved fast once left the judge 3 points a group, too few to decide (NoData).
JUDGED_DELAY = "15s"


def test_a_latency_regression_below_the_threshold_is_caught_by_the_judge(
    operator: OperatorProcess, rollouts: Rollouts, setup: Any
) -> None:
    # +30% latency: the fixed threshold (mean under 200 ms) is happy, the baseline comparison is not.
    s = setup(
        {
            IMAGE_V1: Behaviour(latency=0.1, jitter=0.01),
            IMAGE_V2: Behaviour(latency=0.13, jitter=0.01),
        }
    )
    s.template(
        "latency",
        [
            s.metric(
                "latency-threshold",
                mean_latency_query("{{rollout.canaryGroup}}"),
                interval="3s",
                count=3,
                initialDelay=JUDGED_DELAY,
                successCondition="result[0] < 0.2",
            ),
            s.metric(
                "latency-vs-baseline",
                mean_latency_query("{{group}}"),
                interval="3s",
                count=3,
                initialDelay=JUDGED_DELAY,
                judge={"direction": "increase", "allowedIncrease": 1.1, "critical": True},
            ),
        ],
        scoring={"step": "1s", "lookback": "20s"},
    )
    rollouts.create(
        rollout(
            steps=[
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": "latency"}]}},
                {"setWeight": 50},
            ],
            baseline=True,
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    # The baseline is a fresh copy of the stable version, sized like the canary.
    rollouts.wait(
        lambda st: (
            st.get("baselineServerGroup") == "checkout-v001-baseline"
            and rollouts.sizes().get("checkout-v001-baseline")
            == rollouts.sizes().get("checkout-v002")
            == (2, 2)
        ),
        what="a baseline group as large as the canary",
    )

    status = rollouts.wait_phase("Degraded", timeout=120)
    assert "latency-vs-baseline" in status["message"]
    run = s.run("checkout-v002-step1-a0")["status"]
    by_name = {m["name"]: m for m in run["metricResults"]}
    assert by_name["latency-threshold"]["failed"] == 0  # the threshold alone would have passed it
    judgement = by_name["latency-vs-baseline"]["judgement"]
    assert judgement["classification"] == "High"
    assert judgement["pValue"] < 0.05
    rollouts.wait(
        lambda _: (
            rollouts.sizes().get("checkout-v002") == (0, 0)
            and rollouts.sizes().get("checkout-v001-baseline", (0, 0))[0] == 0
        ),
        what="canary and baseline scaled down",
    )


def test_prometheus_stopping_mid_analysis_pauses_and_never_promotes(
    operator: OperatorProcess, rollouts: Rollouts, setup: Any
) -> None:
    s = setup({IMAGE_V1: Behaviour(), IMAGE_V2: Behaviour()})
    s.template("errors", [error_rate(s, count=30, consecutiveErrorLimit=2)])
    rollouts.create(
        rollout(
            steps=[
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": "errors"}]}},
                {"setWeight": 50},
            ]
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    wait_until(
        lambda: (
            (s.run("checkout-v002-step1-a0").get("status") or {})
            .get("metricResults", [{}])[0]
            .get("successful", 0)
            >= 1
            if rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, "checkout-v002-step1-a0"))
            else None
        ),
        timeout=60,
        what="a first good measurement",
    )
    s.prom.stop()

    status = rollouts.wait_phase("Paused", timeout=90)
    assert (
        "could not measure" in operator.wait_for("AnalysisInconclusive", rollout="checkout").message
    )
    assert status["canaryWeight"] == 20
    assert status["stableServerGroup"] == "checkout-v001"
    time.sleep(3)
    assert rollouts.status()["phase"] == "Paused"  # still waiting for a person
    assert rollouts.sizes()["checkout-v002"] == (2, 2)


def test_a_metric_with_no_data_is_never_a_pass(
    operator: OperatorProcess, rollouts: Rollouts, setup: Any
) -> None:
    s = setup({IMAGE_V1: Behaviour(), IMAGE_V2: Behaviour()})
    s.template(
        "ghost",
        [
            s.metric(
                "ghost",
                'sum(rate(no_such_metric_total{group="{{rollout.canaryGroup}}"}[10s]))',
                interval="1s",
                count=2,
                successCondition="result[0] < 1",
            )
        ],
    )
    rollouts.create(
        rollout(
            steps=[
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": "ghost"}]}},
                {"setWeight": 50},
            ]
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)

    status = rollouts.wait_phase("Paused", timeout=60)
    assert status["pauseConditions"][0]["reason"] == "Inconclusive"
    run = s.run("checkout-v002-step1-a0")["status"]
    assert run["phase"] == "Inconclusive"
    assert rollouts.status()["stableServerGroup"] == "checkout-v001"
    # A person may still decide: promote skips the inconclusive step.
    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_healthy("checkout-v002", timeout=60)


def test_background_analysis_aborts_between_steps(
    operator: OperatorProcess, rollouts: Rollouts, setup: Any
) -> None:
    s = setup({IMAGE_V1: Behaviour(), IMAGE_V2: Behaviour(error_rate=0.3)})
    s.template(
        "errors",
        [
            s.metric(
                "error-rate",
                error_rate_query(),
                interval="2s",
                initialDelay="8s",
                failureCondition="result[0] >= 0.05",
            )
        ],
    )
    rollouts.create(
        rollout(
            steps=[
                {"setWeight": 20},
                {"pause": {"duration": "60s"}},
                {"setWeight": 50},
                {"pause": {}},
            ],
            analysis={"templates": [{"templateName": "errors"}], "startingStep": 1},
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)

    status = rollouts.wait_phase("Degraded", timeout=90)
    assert status["step"] == "2/4"  # during the pause, before the next weight
    assert "background" in status["message"]
    assert "error-rate" in status["message"]
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v002"] == (0, 0), what="canary drained")
