"""Kayenta (a canary judgement delegated to a Kayenta service) and the providers that feed
Herdsman's own judge with series, each against a local server speaking its API."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest

from harness.analysis import metric, run_of
from harness.fakes import FakeSecrets
from harness.local_http import LocalHttpServer, Reply, Request
from herdsman.analysis.measure import measure
from herdsman.analysis.providers import PROVIDERS
from herdsman.analysis.runs import Due, MeasurementResult
from herdsman.cluster.budget import AccessPolicy, Deadline

from .test_http_providers import APIS, flux_csv

pytestmark = pytest.mark.providers

FAST = AccessPolicy(attempts=2, backoff_base=0.01, backoff_cap=0.05, call_timeout=2.0)


class Kayenta:
    """canaryConfig lookup, canary start, and an execution that completes after `polls` reads."""

    def __init__(self, score: float, polls: int = 2) -> None:
        self.score = score
        self.polls = polls
        self.reads = 0
        self.started: list[Request] = []

    def routes(self) -> dict[str, Any]:
        return {
            "/canaryConfig": self.configs,
            "/canary/cfg-7": self.start,
            "/canary/exec-1": self.read,
        }

    def configs(self, request: Request) -> Reply:
        assert request.query["application"] == ["guestbook"]
        assert request.query["configurationAccountName"] == ["config-account"]
        return Reply(200, [{"id": "cfg-1", "name": "other"}, {"id": "cfg-7", "name": "my-test"}])

    def start(self, request: Request) -> Reply:
        self.started.append(request)
        return Reply(200, {"canaryExecutionId": "exec-1"})

    def read(self, request: Request) -> Reply:
        self.reads += 1
        if self.reads < self.polls:
            return Reply(200, {"complete": False, "status": "running"})
        return Reply(
            200,
            {
                "complete": True,
                "status": "succeeded",
                "result": {"judgeResult": {"score": {"score": self.score}}},
            },
        )


def kayenta_metric(server: LocalHttpServer, **more: Any) -> dict[str, Any]:
    return {
        "name": "mann-whitney",
        "interval": "10m",
        "provider": {
            "kayenta": {
                "address": server.url(),
                "application": "guestbook",
                "canaryConfigName": "my-test",
                "configurationAccountName": "config-account",
                "metricsAccountName": "metrics-account",
                "storageAccountName": "storage-account",
                "threshold": {"pass": 90, "marginal": 75},
                "scopes": [
                    {
                        "name": "default",
                        "controlScope": {
                            "scope": "app=guestbook and rollouts-pod-template-hash={{args.stable-hash}}",
                            "region": "us-west-2",
                            "step": 60,
                        },
                        "experimentScope": {
                            "scope": "app=guestbook and rollouts-pod-template-hash={{args.canary-hash}}",
                            "region": "us-west-2",
                            "step": 60,
                            "start": "2026-01-01T11:00:00Z",
                        },
                    }
                ],
                **more,
            }
        },
    }


def run_kayenta(server: LocalHttpServer, deadline: float = 5.0, **more: Any) -> MeasurementResult:
    run = run_of(
        kayenta_metric(server, **more),
        args=[{"name": "stable-hash", "value": "abc"}, {"name": "canary-hash", "value": "def"}],
    )
    return asyncio.run(
        measure(
            run,
            [Due("mann-whitney")],
            deadline=Deadline(deadline),
            secrets=FakeSecrets(),
            policy=FAST,
        )
    )[0]


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PROVIDERS["kayenta"], "poll_every", 0.05)


@pytest.mark.parametrize(
    ("score", "phase"), [(95.0, "Successful"), (80.0, "Inconclusive"), (40.0, "Failed")]
)
def test_kayentas_score_against_the_thresholds_decides(score: float, phase: str) -> None:
    service = Kayenta(score)
    with LocalHttpServer(service.routes()) as server:
        result = run_kayenta(server)
    assert result.phase == phase, result.message
    assert result.value == f"{score}"
    start = service.started[0]
    assert start.query == {
        "application": ["guestbook"],
        "metricsAccountName": ["metrics-account"],
        "configurationAccountName": ["config-account"],
        "storageAccountName": ["storage-account"],
    }
    body = json.loads(start.body)
    assert body["thresholds"] == {"pass": 90, "marginal": 75}
    control = body["scopes"]["default"]["controlScope"]
    experiment = body["scopes"]["default"]["experimentScope"]
    assert control["scope"] == "app=guestbook and rollouts-pod-template-hash=abc"
    assert experiment["start"] == "2026-01-01T11:00:00Z"
    window = datetime.fromisoformat(control["end"]) - datetime.fromisoformat(control["start"])
    assert window.total_seconds() == pytest.approx(600, abs=2)  # one metric interval


def test_a_judgement_outlasting_the_deadline_is_resumed_not_restarted() -> None:
    service = Kayenta(95.0, polls=1_000_000)
    with LocalHttpServer(service.routes()) as server:
        first = run_kayenta(server, deadline=0.6)
        service.polls = service.reads + 1
        second = run_kayenta(server)
    assert first.phase == "Error"
    assert "still running" in first.message
    assert second.phase == "Successful", second.message
    assert len(service.started) == 1


def test_an_unknown_canary_config_is_an_error_naming_it() -> None:
    service = Kayenta(95.0)
    with LocalHttpServer(service.routes()) as server:
        result = run_kayenta(server, canaryConfigName="nope")
    assert result.phase == "Error"
    assert "no canary config 'nope'" in result.message


@pytest.mark.parametrize("status", [401, 503])
def test_kayenta_errors_are_errors(status: int) -> None:
    with LocalHttpServer({"/canaryConfig": lambda r: Reply(status, "no")}) as server:
        result = run_kayenta(server)
    assert result.phase == "Error"
    assert str(status) in result.message


# --- series for the judge -------------------------------------------------------------------------


SERIES = {"checkout-v001-baseline": [1.0, 2.0, 3.0], "checkout-v002": [4.0, 5.0, 6.0]}


def _group_of(request: Request) -> str:
    text = json.dumps([request.query, request.body.decode()])
    return next(group for group in sorted(SERIES, key=len, reverse=True) if group in text)


def datadog_series(request: Request) -> Reply:
    values = SERIES[_group_of(request)]
    body = json.loads(request.body)
    assert body["data"]["type"] == "timeseries_request"
    assert body["data"]["attributes"]["interval"] == 15_000
    return Reply(
        200,
        {
            "data": {
                "attributes": {
                    "series": [{"group_tags": []}],
                    "times": [1, 2, 3],
                    "values": [values],
                }
            }
        },
    )


def wavefront_series(request: Request) -> Reply:
    assert "e" in request.query
    values = SERIES[_group_of(request)]
    return Reply(200, {"timeseries": [{"data": [[i, v] for i, v in enumerate(values)]}]})


def graphite_series(request: Request) -> Reply:
    assert request.query["from"][0].isdigit()
    assert request.query["until"][0].isdigit()
    values = SERIES[_group_of(request)]
    return Reply(200, [{"target": "x", "datapoints": [[v, i] for i, v in enumerate(values)]}])


def influx_series(request: Request) -> Reply:
    query = json.loads(request.body)["query"]
    assert query.startswith("option v = {timeRangeStart: ")
    return Reply(200, flux_csv(*SERIES[_group_of(request)]))


JUDGED = {
    "datadog-v2": (
        "/api/v2/query/timeseries",
        lambda s: {"datadog": {"apiVersion": "v2", "query": "avg:latency{group:{{group}}}"}},
        datadog_series,
    ),
    "wavefront": (
        "/api/v2/chart/api",
        lambda s: {"wavefront": {"address": s.url(), "query": 'ts("latency", group="{{group}}")'}},
        wavefront_series,
    ),
    "graphite": (
        "/render",
        lambda s: {"graphite": {"address": s.url(), "query": "target=latency.{{group}}&from=-1h"}},
        graphite_series,
    ),
    "influxdb": (
        "/api/v2/query",
        lambda s: {
            "influxdb": {
                "query": 'from(bucket: "app") |> range(start: v.timeRangeStart, stop: v.timeRangeStop)'
                ' |> filter(fn: (r) => r.group == "{{group}}")'
            }
        },
        influx_series,
    ),
}


SECRETS_OF = {"datadog-v2": "datadog-v1"}  # the default Secret `datadog`


@pytest.mark.parametrize("name", sorted(JUDGED))
def test_series_feed_the_judge_per_group(name: str) -> None:
    route, provider, handler = JUDGED[name]
    with LocalHttpServer({route: handler}) as server:
        run = run_of(metric("latency", provider=provider(server), judge={"direction": "increase"}))
        result = asyncio.run(
            measure(
                run,
                [Due("latency", ("baseline", "canary"))],
                deadline=Deadline(5),
                secrets=FakeSecrets(APIS[SECRETS_OF.get(name, name)].secrets(server)),
                policy=FAST,
            )
        )[0]
    assert result.message == ""
    assert result.samples == {
        "baseline": SERIES["checkout-v001-baseline"],
        "canary": SERIES["checkout-v002"],
    }
