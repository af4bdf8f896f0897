"""Every HTTP metric provider against a local server that speaks its API's documented shapes.

One table describes each provider: the route it calls, the answer its API gives for a value and
for "nothing", the Secret it reads and the headers that must carry the credentials. Every
provider then goes through the same situations, end to end through `measure()` so what is
checked is the measurement a run would record: a passing and a failing value, no data
(Inconclusive), 401 (Error, not retried), 429 with Retry-After (honoured, then a verdict),
5xx (retried, then Error) and a server that never answers (Error within the deadline).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.analysis import metric, run_of
from harness.fakes import FakeSecrets
from harness.local_http import LocalHttpServer, Reply, Request
from herdsman.analysis.measure import measure
from herdsman.analysis.providers.wavefront import token_key
from herdsman.analysis.runs import Due, MeasurementResult
from herdsman.cluster.budget import AccessPolicy, Deadline

pytestmark = pytest.mark.providers

FAST = AccessPolicy(attempts=3, backoff_base=0.01, backoff_cap=0.05, call_timeout=2.0)
T = 1_767_268_800  # 2026-01-01T12:00:00Z


@dataclass
class Api:
    """How one provider's API looks from the outside."""

    route: str
    provider: Callable[[LocalHttpServer], dict[str, Any]]
    answer: Callable[[float], Any]
    empty: Any
    condition: str
    secrets: Callable[[LocalHttpServer], dict[tuple[str, str, str], str]] = lambda s: {}
    auth: dict[str, str] = field(default_factory=dict)
    """Headers every request must carry (the credentials)."""
    check: Callable[[Request], None] = lambda r: None
    """Further checks of the request the provider sent."""


def _dd_v1_check(request: Request) -> None:
    assert request.method == "GET"
    assert request.query["query"] == ["avg:errors{service:checkout}"]
    assert int(request.query["to"][0]) - int(request.query["from"][0]) == 600


def _dd_v2_check(request: Request) -> None:
    body = json.loads(request.body)
    attributes = body["data"]["attributes"]
    assert body["data"]["type"] == "scalar_request"
    assert attributes["to"] - attributes["from"] == 300_000
    assert attributes["queries"] == [
        {"data_source": "metrics", "name": "a", "query": "sum:errors{*}", "aggregator": "sum"},
        {"data_source": "metrics", "name": "b", "query": "sum:hits{*}", "aggregator": "sum"},
    ]
    assert attributes["formulas"] == [{"formula": "a / b"}]


def _nrql_check(request: Request) -> None:
    body = json.loads(request.body)
    assert "nrql(query: $nrql" in body["query"]
    assert body["variables"] == {
        "accountId": 12345,
        "nrql": "FROM Transaction SELECT percentage(count(*), WHERE error) AS rate",
        "timeout": 7,
    }


def _wavefront_check(request: Request) -> None:
    assert request.query["q"] == ['ts("errors", service="checkout")']
    assert request.query["g"] == ["s"]


def _graphite_check(request: Request) -> None:
    assert request.query["target"] == [
        "summarize( asPercent(errors.checkout, hits.checkout), '5min', 'avg')"
    ]
    assert request.query["format"] == ["json"]
    assert request.query["from"] == ["-10min"]


def _skywalking_check(request: Request) -> None:
    body = json.loads(request.body)
    assert body["query"].startswith("query queryData($duration: Duration!)")
    duration = body["variables"]["duration"]
    assert duration["step"] == "MINUTE"
    assert len(duration["start"]) == len("2026-01-01 1204")


def _flux_check(request: Request) -> None:
    body = json.loads(request.body)
    assert body["query"].startswith('from(bucket: "app")')
    assert request.query["org"] == ["acme"]


def flux_csv(*values: float | None) -> str:
    """InfluxDB's annotated CSV for a table of `_value`s (empty when no values)."""
    if not values:
        return "\r\n"
    head = (
        "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string\r\n"
        "#group,false,false,true,true,false,false,true,true\r\n"
        "#default,_result,,,,,,,\r\n"
        ",result,table,_start,_stop,_time,_value,_field,_measurement\r\n"
    )
    rows = "".join(
        f",,0,2026-01-01T11:45:00Z,2026-01-01T12:00:00Z,2026-01-01T11:5{i}:00Z,"
        f"{'' if v is None else v},rate,errors\r\n"
        for i, v in enumerate(values)
    )
    return head + rows + "\r\n"


APIS: dict[str, Api] = {
    "datadog-v1": Api(
        route="/api/v1/query",
        provider=lambda s: {
            "datadog": {"query": "avg:errors{service:{{args.svc}}}", "interval": "10m"}
        },
        answer=lambda v: {
            "status": "ok",
            "series": [{"pointlist": [[T * 1000, 9.0], [T * 1000 + 1, v]]}],
        },
        empty={"status": "ok", "series": []},
        condition="result < 1",
        secrets=lambda s: {
            ("shop", "datadog", "api-key"): "dd-api",
            ("shop", "datadog", "app-key"): "dd-app",
            ("shop", "datadog", "address"): s.url(),
        },
        auth={"DD-API-KEY": "dd-api", "DD-APPLICATION-KEY": "dd-app"},
        check=_dd_v1_check,
    ),
    "datadog-v2": Api(
        route="/api/v2/query/scalar",
        provider=lambda s: {
            "datadog": {
                "apiVersion": "v2",
                "queries": {"a": "sum:errors{*}", "b": "sum:hits{*}"},
                "formula": "a / b",
                "aggregator": "sum",
                "secretRef": {"name": "dd-team-a", "namespaced": True},
            }
        },
        answer=lambda v: {
            "data": {
                "type": "scalar_response",
                "attributes": {"columns": [{"name": "a / b", "type": "number", "values": [v]}]},
            }
        },
        empty={"data": {"type": "scalar_response", "attributes": {"columns": []}}},
        condition="result < 1",
        secrets=lambda s: {
            ("shop", "dd-team-a", "api-key"): "team-a-api",
            ("shop", "dd-team-a", "app-key"): "team-a-app",
            ("shop", "dd-team-a", "address"): s.url(),
        },
        auth={"DD-API-KEY": "team-a-api", "DD-APPLICATION-KEY": "team-a-app"},
        check=_dd_v2_check,
    ),
    "newrelic": Api(
        route="/graphql",
        provider=lambda s: {
            "newRelic": {
                "profile": "nr-prod",
                "query": "FROM Transaction SELECT percentage(count(*), WHERE error) AS rate\n",
                "timeout": 7,
            }
        },
        answer=lambda v: {"data": {"actor": {"account": {"nrql": {"results": [{"rate": v}]}}}}},
        empty={"data": {"actor": {"account": {"nrql": {"results": []}}}}},
        condition="result.rate < 1",
        secrets=lambda s: {
            ("shop", "nr-prod", "personal-api-key"): "NRAK-1",
            ("shop", "nr-prod", "account-id"): "12345",
            ("shop", "nr-prod", "base-url-nerdgraph"): s.url("/graphql"),
        },
        auth={"API-Key": "NRAK-1"},
        check=_nrql_check,
    ),
    "wavefront": Api(
        route="/api/v2/chart/api",
        provider=lambda s: {
            "wavefront": {"address": s.url(), "query": 'ts("errors",\n  service="checkout")'}
        },
        answer=lambda v: {"timeseries": [{"label": "errors", "data": [[T, v]]}]},
        empty={"timeseries": []},
        condition="result < 1",
        secrets=lambda s: {("shop", "wavefront-api-tokens", token_key(s.url())): "wf-token"},
        auth={"Authorization": "Bearer wf-token"},
        check=_wavefront_check,
    ),
    "graphite": Api(
        route="/render",
        provider=lambda s: {
            "graphite": {
                "address": s.url(),
                "query": "target=summarize(\n  asPercent(errors.checkout, hits.checkout),\n"
                "  '5min', 'avg')&from=-10min",
            }
        },
        answer=lambda v: [{"target": "x", "datapoints": [[None, T - 60], [v, T]]}],
        empty=[{"target": "x", "datapoints": [[None, T - 60], [None, T]]}],
        condition="result[0] < 1",
        check=_graphite_check,
    ),
    "skywalking": Api(
        route="/graphql",
        provider=lambda s: {
            "skywalking": {
                "address": s.url(),
                "interval": "3m",
                "query": "query queryData($duration: Duration!) { service_apdex: readMetricsValues("
                'condition: { name: "service_apdex" }, duration: $duration)'
                " { label values { values { value } } } }",
            }
        },
        answer=lambda v: {
            "data": {"service_apdex": {"label": None, "values": {"values": [{"value": v}]}}}
        },
        empty={"data": {"service_apdex": {"label": None, "values": {"values": []}}}},
        condition="result.service_apdex.values.values.all(p, p.value < 1)",
        check=_skywalking_check,
    ),
    "influxdb": Api(
        route="/api/v2/query",
        provider=lambda s: {"influxdb": {"query": 'from(bucket: "app") |> range(start: -15m)'}},
        answer=lambda v: flux_csv(v),
        empty=flux_csv(),
        condition="result[0] < 1",
        secrets=lambda s: {
            ("shop", "influxdb", "address"): s.url(),
            ("shop", "influxdb", "authToken"): "influx-token",
            ("shop", "influxdb", "org"): "acme",
        },
        auth={"Authorization": "Token influx-token"},
        check=_flux_check,
    ),
}


def measure_one(
    api: Api,
    server: LocalHttpServer,
    *,
    deadline: float = 5.0,
    policy: AccessPolicy = FAST,
) -> MeasurementResult:
    run = run_of(
        metric("m", provider=api.provider(server), successCondition=api.condition),
        args=[{"name": "svc", "value": "checkout"}],
    )
    results = asyncio.run(
        measure(
            run,
            [Due("m")],
            deadline=Deadline(deadline),
            secrets=FakeSecrets(api.secrets(server)),
            policy=policy,
        )
    )
    return results[0]


def _reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, body, headers or {})


def _served(name: str, replies: list[Reply]) -> tuple[Api, LocalHttpServer]:
    api = APIS[name]

    def answer(request: Request) -> Reply:
        return replies.pop(0) if len(replies) > 1 else replies[0]

    return api, LocalHttpServer({api.route: answer})


@pytest.mark.parametrize("name", sorted(APIS))
def test_a_value_is_measured_with_the_credentials_and_judged(name: str) -> None:
    for value, phase in ((0.25, "Successful"), (4.0, "Failed")):
        api, server = _served(name, [_reply(APIS[name].answer(value))])
        with server:
            result = measure_one(api, server)
            sent = server.requests[0]
        assert result.phase == phase, result.message
        assert ("0.25" if value == 0.25 else "4") in result.value
        for header, expected in api.auth.items():
            assert sent.headers.get(header) == expected, f"{header}: {sent.headers}"
        api.check(sent)


@pytest.mark.parametrize("name", sorted(APIS))
def test_no_data_is_inconclusive_never_a_pass(name: str) -> None:
    api, server = _served(name, [_reply(APIS[name].empty)])
    with server:
        result = measure_one(api, server)
    assert result.phase == "Inconclusive", result.message
    assert result.message == "no data"


@pytest.mark.parametrize("name", sorted(APIS))
def test_unauthorized_is_an_error_at_once(name: str) -> None:
    api, server = _served(name, [_reply({"errors": ["Forbidden"]}, 401)])
    with server:
        result = measure_one(api, server)
        hits = server.hits(api.route)
    assert result.phase == "Error"
    assert "401" in result.message
    assert hits == 1


@pytest.mark.parametrize("name", sorted(APIS))
def test_429_waits_as_asked_then_measures(name: str) -> None:
    api, server = _served(
        name,
        [
            _reply({"errors": ["rate limited"]}, 429, {"Retry-After": "1"}),
            _reply(APIS[name].answer(0.5)),
        ],
    )
    with server:
        started = time.monotonic()
        result = measure_one(api, server)
        took = time.monotonic() - started
        hits = server.hits(api.route)
    assert result.phase == "Successful", result.message
    assert hits == 2
    assert took >= 1.0


@pytest.mark.parametrize("name", sorted(APIS))
def test_429_asking_for_longer_than_the_deadline_is_an_error(name: str) -> None:
    api, server = _served(name, [_reply({"errors": ["slow down"]}, 429, {"Retry-After": "60"})])
    with server:
        result = measure_one(api, server)
    assert result.phase == "Error"
    assert "Retry-After" in result.message


@pytest.mark.parametrize("name", sorted(APIS))
def test_server_errors_are_retried_then_an_error(name: str) -> None:
    api, server = _served(name, [_reply("upstream down", 503)])
    with server:
        result = measure_one(api, server)
        hits = server.hits(api.route)
    assert result.phase == "Error"
    assert "503" in result.message
    assert hits == FAST.attempts


@pytest.mark.parametrize("name", sorted(APIS))
def test_a_server_that_never_answers_is_an_error_within_the_deadline(name: str) -> None:
    api = APIS[name]
    with LocalHttpServer({}) as server:

        def stall(request: Request) -> Reply:
            server.release.wait(30)
            return _reply(api.answer(0.1))

        server.routes[api.route] = stall
        started = time.monotonic()
        result = measure_one(
            api, server, deadline=1.2, policy=AccessPolicy(call_timeout=0.3, backoff_base=0.01)
        )
        took = time.monotonic() - started
    assert result.phase == "Error"
    assert took < 2.5


@pytest.mark.parametrize("name", sorted(set(APIS) - {"graphite", "skywalking"}))
def test_a_missing_secret_is_an_error_naming_it(name: str) -> None:
    api = APIS[name]
    with LocalHttpServer({api.route: lambda r: _reply(api.answer(0.1))}) as server:
        run = run_of(
            metric("m", provider=api.provider(server), successCondition=api.condition),
            args=[{"name": "svc", "value": "checkout"}],
        )
        result = asyncio.run(
            measure(run, [Due("m")], deadline=Deadline(5), secrets=FakeSecrets(), policy=FAST)
        )[0]
        hits = server.hits(api.route)
    assert result.phase == "Error"
    assert "Secret shop/" in result.message
    assert hits == 0
