"""The Prometheus provider against a real Prometheus scraping an exporter the test controls.

The scenario a user would tell: a canary's error ratio is fine, then rises; the analysis run
fails within one measurement. Also: one dead address of two costs nothing, a dead Prometheus is
an Error in time, and judged metrics get a range of samples per server group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from harness.analysis import metric, prometheus, run_of
from harness.fakes import FakeSecrets
from harness.local_http import free_port
from harness.prometheus import Exporter, PrometheusServer, binary_or_skip, running
from herdsman.analysis.measure import measure
from herdsman.analysis.runs import due, record
from herdsman.api.analysis_run import AnalysisRun
from herdsman.cluster.budget import AccessPolicy, Deadline

pytestmark = pytest.mark.e2e

RATIO = "herdsman_test_error_ratio"
LATENCY = "herdsman_test_latency_seconds"


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter() as running_exporter:
        yield running_exporter


@pytest.fixture(scope="module")
def prom(exporter: Exporter) -> Iterator[PrometheusServer]:
    binary = binary_or_skip()
    exporter.set(RATIO, 0.001, group="canary")
    with running([exporter.target], binary=binary) as server:
        server.wait_for(f'{RATIO}{{group="canary"}}', lambda v: v == [0.001])
        yield server


def reconcile(run: AnalysisRun, *, budget: float = 5.0) -> AnalysisRun:
    """One pass of what the rollout loop does with a run: due, measure, record."""
    now = datetime.now(UTC)
    results = asyncio.run(
        measure(
            run,
            due(run, now),
            deadline=Deadline(budget),
            secrets=FakeSecrets(),
            policy=AccessPolicy(),
        )
    )
    return run.model_copy(update={"status": record(run, results, datetime.now(UTC))})


def test_a_canary_whose_error_rate_rises_fails_the_run_within_one_measurement(
    prom: PrometheusServer, exporter: Exporter
) -> None:
    run = run_of(
        metric(
            "error-ratio",
            provider=prometheus(f'{RATIO}{{group="{{{{args.group}}}}"}}', [prom.url]),
            interval="1s",
            count=50,
            successCondition="result[0] < 0.01",
        ),
        args=[{"name": "group", "value": "canary"}],
        created=datetime.now(UTC),
    )
    run = reconcile(run)
    result = run.status.metric_results[0]
    assert (run.status.phase, result.successful) == ("Running", 1)
    assert result.measurements[-1].value == "[0.001]"

    exporter.set(RATIO, 0.2, group="canary")
    prom.wait_for(f'{RATIO}{{group="canary"}}', lambda v: v == [0.2])
    time.sleep(1.0)  # the metric's interval
    run = reconcile(run)
    assert run.status.phase == "Failed"
    assert run.status.metric_results[0].failed == 1
    assert "successCondition" in run.status.message
    exporter.set(RATIO, 0.001, group="canary")


def test_a_series_that_does_not_exist_is_inconclusive_never_successful(
    prom: PrometheusServer,
) -> None:
    run = run_of(
        metric(
            "absent",
            provider=prometheus(f'{RATIO}{{group="nobody"}}', [prom.url]),
            failureCondition="result[0] > 0.01",
        ),
        created=datetime.now(UTC),
    )
    run = reconcile(run)
    assert run.status.phase == "Inconclusive"
    assert run.status.metric_results[0].measurements[-1].message == "no data"


def test_a_dead_first_address_fails_over_to_the_live_prometheus(prom: PrometheusServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    run = run_of(
        metric(
            "scalar",
            provider=prometheus(f"scalar(sum({RATIO}))", [dead, prom.url]),
            successCondition="result < 1",
        ),
        created=datetime.now(UTC),
    )
    run = reconcile(run)
    assert run.status.phase == "Successful", run.status.message


def test_judged_metrics_get_samples_of_each_server_group(
    prom: PrometheusServer, exporter: Exporter
) -> None:
    exporter.set(LATENCY, 0.1, group="checkout-v001-baseline")
    exporter.set(LATENCY, 0.3, group="checkout-v002")
    prom.wait_for(LATENCY, lambda v: len(v) == 2)
    time.sleep(3.0)  # a few scrapes of history
    run = run_of(
        metric(
            "p99", provider=prometheus(f'{LATENCY}{{group="{{{{group}}}}"}}', [prom.url]), judge={}
        ),
        scoring={"lookback": "30s", "step": "1s"},
        created=datetime.now(UTC),
    )
    results = asyncio.run(
        measure(run, due(run, datetime.now(UTC)), deadline=Deadline(5), secrets=FakeSecrets())
    )
    assert results[0].phase is None, results[0].message
    samples = results[0].samples
    assert samples is not None
    assert len(samples["baseline"]) >= 2
    assert set(samples["baseline"]) == {0.1}
    assert len(samples["canary"]) >= 2
    assert set(samples["canary"]) == {0.3}


def test_a_prometheus_that_is_gone_is_an_error_within_the_deadline(exporter: Exporter) -> None:
    binary = binary_or_skip()
    with running([exporter.target], binary=binary) as server:
        url = server.url
        server.stop()
        assert server.process.poll() is not None
    run = run_of(metric("gone", provider=prometheus("up", [url])), created=datetime.now(UTC))
    started = time.monotonic()
    results = asyncio.run(
        measure(run, due(run, datetime.now(UTC)), deadline=Deadline(2.0), secrets=FakeSecrets())
    )
    assert time.monotonic() - started < 3.0
    assert results[0].phase == "Error"
    assert "gave up" in results[0].message
