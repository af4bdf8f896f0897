"""`kubectl herdsman analysis` on real runs: a real Prometheus scraping a synthetic service,
a judged metric, and the plugin reading back what the operator measured."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness import prometheus
from harness.cluster import Cluster
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V1, IMAGE_V2, IMAGE_V3, Rollouts, rollout
from herdsman.cli.main import main
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES
from herdsman.simulate import Behaviour, TrafficSimulator, mean_latency_query, replica_ratio

pytestmark = pytest.mark.e2e


class Plugin:
    """`kubectl herdsman ...` in-process, pointed at the test cluster and namespace."""

    def __init__(self, cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]):
        self.flags = ["-n", namespace, "--kubeconfig", str(cluster.kubeconfig)]
        self.capsys = capsys

    def ok(self, *args: str) -> str:
        self.capsys.readouterr()
        code = main([*args, *self.flags])
        out, err = self.capsys.readouterr()
        assert code == 0, f"kubectl herdsman {' '.join(args)} failed ({code}): {err}"
        assert err == ""

        return out


@pytest.fixture
def plugin(cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]) -> Plugin:
    return Plugin(cluster, namespace, capsys)


@pytest.fixture
def traffic(cluster: Cluster, rollouts: Rollouts) -> Iterator[TrafficSimulator]:
    # v2 behaves like v1; v3 answers 30% slower -- still far under any fixed threshold.
    simulator = TrafficSimulator(
        replica_ratio(cluster.rest, rollouts.ns, "checkout"),
        {
            IMAGE_V1: Behaviour(latency=0.1, jitter=0.01),
            IMAGE_V2: Behaviour(latency=0.1, jitter=0.01),
            IMAGE_V3: Behaviour(latency=0.13, jitter=0.01),
        },
    ).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def prom(traffic: TrafficSimulator) -> Iterator[Any]:
    server = prometheus.start([traffic.target], binary=prometheus.binary_or_skip())
    yield server
    server.stop()


def line_with(text: str, needle: str) -> str:
    hits = [line for line in text.splitlines() if needle in line]
    assert hits, f"{needle!r} not in:\n{text}"
    return hits[0]


def row(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`, panel borders dropped."""
    for line in text.splitlines():
        cells = [c for c in line.split() if c != "│"]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row starting with {first!r} in:\n{text}")


def judgement_of(rollouts: Rollouts, run: str) -> dict[str, Any]:
    body = rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, run))
    assert body is not None, f"no AnalysisRun {run}"
    result = next(r for r in body["status"]["metricResults"] if r["name"] == "latency-vs-baseline")
    judgement: dict[str, Any] = result["judgement"]

    return judgement


def test_analysis_shows_the_judges_numbers_for_a_passing_and_a_failing_canary(
    operator: OperatorProcess, rollouts: Rollouts, plugin: Plugin, prom: Any
) -> None:
    def metric(name: str, group: str, **fields: Any) -> dict[str, Any]:
        query = mean_latency_query(group)
        return {
            "name": name,
            "provider": {"prometheus": {"address": prom.url, "query": query}},
            "interval": "3s",
            "count": 3,
            # As test_analysis.JUDGED_DELAY: at 10 s a loaded rehearsal left the judge 3 points
            # a group (NoData, which fails a metric that must have data).
            "initialDelay": "15s",
            **fields,
        }

    template = {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "latency"},
        "spec": {
            "metrics": [
                metric(
                    "latency-threshold",
                    "{{rollout.canaryGroup}}",
                    successCondition="result[0] < 0.2",
                ),
                metric(
                    "latency-vs-baseline",
                    "{{group}}",
                    judge={"direction": "increase", "allowedIncrease": 1.1, "critical": True},
                ),
            ],
            "scoring": {"step": "1s", "lookback": "20s"},
        },
    }
    rollouts.rest.create(ANALYSIS_TEMPLATES.url(rollouts.ns), template)
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "latency"}]}},
        {"setWeight": 50},
    ]
    rollouts.create(rollout(steps=steps, baseline=True))
    rollouts.wait_healthy("checkout-v001")

    # v2 is v1 again: the judge passes it, and --rollout finds the run it passed.
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_healthy("checkout-v002", timeout=120)
    passed = judgement_of(rollouts, "checkout-v002-step1-a0")
    assert passed["classification"] == "Pass"
    out = plugin.ok("analysis", "--rollout", "checkout")
    assert "checkout-v002-step1-a0" in line_with(out, "AnalysisRun")
    assert "Successful" in line_with(out, "Phase")
    assert "Pass" in line_with(out, "classification")
    assert f"{passed['pValue']:.3g}" in line_with(out, "p-value")
    assert f"{passed['statistic']:g}" in line_with(out, "Mann-Whitney U")
    assert "100 pass" in line_with(out, "│ Score ")
    assert "checkout-v002 · baseline checkout-v001-baseline" in line_with(out, "Groups")

    # v3 is 30% slower: High, the critical metric fails the run, the rollout is rolled back.
    rollouts.set_image(IMAGE_V3)
    rollouts.wait_phase("Degraded", timeout=120)
    failed = judgement_of(rollouts, "checkout-v003-step1-a0")
    assert failed["classification"] == "High"
    out = plugin.ok("analysis", "checkout-v003-step1-a0")
    assert "Failed" in line_with(out, "Phase")
    assert "High" in line_with(out, "classification")
    assert f"{failed['pValue']:.3g}" in line_with(out, "p-value")
    assert "significant" in line_with(out, "p-value")
    assert "0 fail" in line_with(out, "│ Score ")
    assert "critical failure: latency-vs-baseline" in line_with(out, "│ Score ")
    baseline, canary = failed["baseline"], failed["canary"]
    assert f"{baseline['inputCount']} / {canary['inputCount']}" in line_with(out, "points")

    # status: the run's phase, score and failing metric in its row.
    view = plugin.ok("status", "checkout")
    assert row(view, "checkout-v003-step1-a0") == [
        "checkout-v003-step1-a0",
        "step",
        "2",
        "Failed",
        "0",
        "fail",
        "latency-vs-baseline",
    ]
