"""Every query of the chart's Grafana dashboard, run by a real Prometheus, returns data.

A child process imports herdsman.metrics (the operator's own registry, its real metric types
and label names), fills it the way a release in flight would — phases, steps, weights, ended
releases, step durations, measurements, scores, cost, reconciles, the workqueue — keeps
counting, and serves it with `herdsman.metrics.serve`. Prometheus scrapes it every second; then
each panel's expression, with the dashboard's variables set to "All", must parse and answer with
at least one series.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from harness import prometheus
from harness.cluster import CHART, wait_until
from harness.local_http import free_port

pytestmark = pytest.mark.e2e

# What one operator would have exported mid-release, then more of it every half second.
EXPORTER = """
import sys, time
from herdsman import metrics as m
port = int(sys.argv[1])
m.rollout_gauges.put("shop", "cart", m.RolloutSeries(phase="Degraded"))
m.rollout_gauges.put(
    "shop",
    "checkout",
    m.RolloutSeries(
        phase="Paused",
        step=3,
        steps=5,
        canary_weight=20,
        traffic=(70, 20, 10),
        replicas=(7, 2, 1, 0, 0),
        cost=(("stable", 2100), ("canary", 600), ("baseline", 300)),
        team="payments",
        currency="USD",
        money=1.25,
        chaos_pods=2,
        http_fault=True,
    ),
)
m.rollout_gauges.score("shop", "checkout", "checkout-v002-step2-a0", 87)
counted = [
    ("herdsman_rollout_transitions", ("StepStarted",)),
    ("herdsman_releases", ("completed",)),
    ("herdsman_releases", ("aborted",)),
    ("herdsman_releases", ("rolled_back",)),
    ("herdsman_analysis_measurements", ("errors", "Successful")),
    ("herdsman_analysis_measurements", ("errors", "Failed")),
    ("herdsman_analysis_runs", ("Successful",)),
]
for counter, labels in counted:
    m.rollout_counters.inc(counter, "shop", "checkout", *labels, amount=0)
children = [
    m.api_errors.labels(verb="PATCH", code="409"),
    m.retries.labels(call="kubernetes"),
    m.deadline_expiries.labels(call="prometheus"),
]
waited = m.track_queue("rollouts", lambda: 12, lambda: 64)
m.serve(port, addr="127.0.0.1")
print("serving", flush=True)
time.sleep(2.5)  # let Prometheus see every counter at zero before it moves
n = 0
while True:
    n += 1
    for child in children:
        child.inc()
    for counter, labels in counted:
        m.rollout_counters.inc(counter, "shop", "checkout", *labels)
    for kind, seconds in (("setWeight", 2), ("pause", 30), ("analysis", 90)):
        m.rollout_counters.observe_step("shop", "checkout", kind, seconds + n % 3)
    for result, seconds in (("ok", 0.02), ("conflict", 0.3)):
        m.reconcile_duration.labels(result=result).observe(seconds)
    waited(True, 0.4)
    waited(False, 0.05)
    time.sleep(0.5)
"""

VARIABLES = {
    "$namespace": ".*",
    "$rollout": ".*",
    "$__rate_interval": "10s",
    "$__range": "1m",
}


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads((CHART / "dashboards" / "herdsman.json").read_text())
    found = []
    for panel in board["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                expr = target["expr"]
                for name, value in VARIABLES.items():
                    expr = expr.replace(name, value)
                assert "$" not in expr, expr
                found.append((inner["title"], expr))
    return found


def scraped(prom: prometheus.PrometheusServer, times: int) -> None:
    expr = "count_over_time(herdsman_releases_total[1m])"
    wait_until(
        lambda: (lambda v: v and min(v) >= times)(prom.values(expr)),
        timeout=40,
        what=f"{times} scrapes",
    )


@pytest.fixture
def exporter() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", EXPORTER, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "serving"
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_every_dashboard_query_answers_from_the_operators_metrics(exporter: str) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    with prometheus.running([exporter], binary=prometheus.binary_or_skip()) as prom:
        # Enough scrapes for rates over 10s windows and increases over the minute.
        scraped(prom, 8)
        time.sleep(1)
        empty, broken = [], []
        for title, expr in queries:
            answer = requests.get(
                f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10
            ).json()
            if answer["status"] != "success":
                broken.append(f"{title}: {answer.get('error')}\n    {expr}")
            elif not answer["data"]["result"]:
                empty.append(f"{title}: {expr}")
        assert not broken, "Prometheus refuses:\n" + "\n".join(broken)
        assert not empty, "no data for:\n" + "\n".join(empty)


def test_the_success_rate_panel_computes_what_it_says(exporter: str) -> None:
    (expr,) = [e for t, e in dashboard_queries() if t == "Success rate"]
    with prometheus.running([exporter], binary=prometheus.binary_or_skip()) as prom:
        scraped(prom, 5)
        (rate,) = prom.values(expr)
        # Completed, aborted and rolled back grow alike: one in three succeeds.
        assert rate == pytest.approx(1 / 3, abs=0.05)
        assert re.search(r"result=\"completed\"", expr)
