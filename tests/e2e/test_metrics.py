"""The operator's /metrics, scraped by a real Prometheus while a real rollout runs."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import prometheus
from harness.cluster import Cluster, wait_until
from harness.local_http import free_port
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout

pytestmark = pytest.mark.e2e


def query(prom: prometheus.PrometheusServer, expr: str) -> list[dict[str, Any]]:
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as answer:
        result: list[dict[str, Any]] = json.load(answer)["data"]["result"]
    return result


@pytest.fixture
def scraped_operator(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, prometheus.PrometheusServer]]:
    port = free_port()
    op = OperatorProcess(
        cluster=cluster,
        namespaces=[namespace],
        log_path=tmp_path / "operator.log",
        extra_args=["--metrics-port", str(port)],
    ).start()
    prom = prometheus.start([f"127.0.0.1:{port}"], binary=prometheus.binary_or_skip())
    yield op, prom
    prom.stop()
    op.stop()


def test_prometheus_sees_every_weight_the_rollout_went_through(
    scraped_operator: tuple[OperatorProcess, prometheus.PrometheusServer], rollouts: Rollouts
) -> None:
    op, prom = scraped_operator
    # Prometheus scrapes a new target a moment after it is ready; the rollout must not outrun it.
    wait_until(lambda: query(prom, "up == 1"), timeout=30, what="the first scrape of the operator")
    steps = [
        {"setWeight": 20},
        {"pause": {"duration": "3s"}},
        {"setWeight": 50},
        {"pause": {"duration": "3s"}},
    ]
    rollouts.create(rollout(steps=steps))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_healthy("checkout-v002", timeout=60)

    selector = f'{{namespace="{rollouts.ns}",rollout="checkout"}}'

    def weights_seen() -> set[int] | None:
        found = query(prom, f"herdsman_rollout_canary_weight{selector}[2m]")
        values = {int(float(v)) for series in found for _, v in series.get("values", [])}
        return values if {20, 50} <= values else None

    seen = wait_until(
        weights_seen,
        timeout=30,
        what="20% and 50% in Prometheus",
        describe=lambda: str(query(prom, "herdsman_rollout_canary_weight[2m]")) + prom.log_tail(),
    )
    assert seen <= {0, 20, 50, 100}

    ns = rollouts.ns

    def scraped(expr: str) -> float | None:
        """The value once Prometheus has scraped it: completion lands a scrape after the weights."""
        found = query(prom, expr)
        return float(found[0]["value"][1]) if found else None

    def value(expr: str) -> float:
        return wait_until(lambda: scraped(expr), timeout=15, what=expr)

    assert value(f'herdsman_releases_total{{namespace="{ns}",result="completed"}}') == 1
    assert (
        value(f'herdsman_rollout_transitions_total{{namespace="{ns}",reason="StepStarted"}}') == 4
    )
    assert value(f'herdsman_step_duration_seconds_count{{namespace="{ns}",kind="pause"}}') == 2
    assert query(prom, 'sum(herdsman_reconcile_duration_seconds_count{result="ok"})')
    # Pods coming up change only the counters in status: the passes those writes would wake
    # again find nothing to do, and are not run.
    assert value("herdsman_echoes_skipped_total") >= 1
    # Each pass reads both Services by name: after the first, from the watch of Services.
    from_watch = value('herdsman_api_reads_cached_total{resource="services"}')
    from_server = scraped('herdsman_api_requests_total{verb="GET",resource="services"}') or 0.0
    assert from_watch > 2 * from_server, (from_watch, from_server)
    assert not op.errors()
