"""Providers against real HTTP servers on 127.0.0.1: answers, failures, slowness, failover."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic.alias_generators import to_snake

from harness.analysis import T0, metric, prometheus, run_of, web
from harness.fakes import FakeSecrets
from harness.local_http import LocalHttpServer, Reply, Request, free_port
from herdsman.analysis.conditions import Observation
from herdsman.analysis.measure import measure
from herdsman.analysis.providers import PROVIDERS, provider_for
from herdsman.analysis.providers.base import ProviderContext, Window
from herdsman.analysis.providers.prometheus import (
    connection,
    parse_instant,
    parse_range,
    range_step,
)
from herdsman.analysis.providers.templating import TemplateError, render
from herdsman.analysis.providers.web import WebResponseError, decode
from herdsman.analysis.runs import Due
from herdsman.api.analysis import PROVIDER_FIELDS, Metric, PrometheusMetric, WebMetric
from herdsman.cluster.budget import AccessPolicy, Deadline
from herdsman.cluster.retry import GaveUp, HttpStatusError

pytestmark = pytest.mark.unit

FAST = AccessPolicy(attempts=3, backoff_base=0.01, backoff_cap=0.05, call_timeout=2.0)


def context(secrets: FakeSecrets | None = None, policy: AccessPolicy = FAST) -> ProviderContext:
    return ProviderContext(
        namespace="shop", secrets=secrets or FakeSecrets(), policy=policy, metric="m"
    )


def vector(*values: str) -> Reply:
    result = [{"metric": {"i": str(i)}, "value": [1.7e9, v]} for i, v in enumerate(values)]
    return Reply(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


# --- templating ---------------------------------------------------------------------------------


def test_placeholders_are_filled_and_an_unknown_one_is_an_error() -> None:
    variables = {"args.service": "checkout", "rollout.canaryGroup": "checkout-v002"}
    assert render(
        'rate(x{svc="{{ args.service }}",g="{{rollout.canaryGroup}}"}[1m])', variables
    ) == ('rate(x{svc="checkout",g="checkout-v002"}[1m])')
    with pytest.raises(TemplateError, match=r"unknown placeholder \{\{args.missing\}\}"):
        render("{{args.missing}}", variables)
    assert render('{job="x"} {a=~"b{2}"}', {}) == '{job="x"} {a=~"b{2}"}'


# --- parsing Prometheus answers -----------------------------------------------------------------


def test_prometheus_answers_become_argo_style_results() -> None:
    assert parse_instant([1.7e9, "0.25"]) == Observation(0.25)
    assert parse_instant(
        [{"metric": {}, "value": [1.7e9, "1"]}, {"metric": {}, "value": [1.7e9, "2"]}]
    ) == (Observation([1.0, 2.0]))
    assert not parse_instant([]).has_data
    assert not parse_instant([1.7e9, "NaN"]).has_data
    assert not parse_instant([{"metric": {}, "value": [1.7e9, "NaN"]}]).has_data
    with pytest.raises(ValueError, match="range vector"):
        parse_instant([{"metric": {}, "values": [[1.7e9, "1"]]}])
    assert parse_range([{"metric": {}, "values": [[1, "1"], [2, "2.5"]]}]) == [1.0, 2.5]
    assert parse_range([]) == []
    with pytest.raises(ValueError, match="one series per group"):
        parse_range([{"metric": {}, "values": []}, {"metric": {}, "values": []}])


def test_range_step_is_coarsened_to_stay_under_the_point_limit() -> None:
    day = Window(T0 - timedelta(days=7), T0, 15.0)
    assert range_step(day) == 61.0
    assert range_step(Window(T0 - timedelta(minutes=10), T0, 15.0)) == 15.0


# --- web ----------------------------------------------------------------------------------------


def test_web_json_path_in_kubernetes_and_plain_forms() -> None:
    body = '{"data": {"ok": true, "rates": [0.1, 0.2], "items": [{"n": "a", "v": 1}, {"n": "b", "v": 2}]}}'
    assert decode(body, "{$.data.ok}") == Observation(True)
    assert decode(body, ".data.rates[*]") == Observation([0.1, 0.2])
    assert decode(body, '$.data.items[?(@.n=="b")].v') == Observation(2)
    assert not decode(body, "$.data.absent").has_data
    assert not decode('{"data": null}', "$.data").has_data
    assert decode("plain text", None) == Observation("plain text")
    with pytest.raises(WebResponseError, match="not JSON"):
        decode("plain text", "$.x")


def test_web_provider_sends_method_headers_and_body_and_reads_the_answer() -> None:
    secrets = FakeSecrets({("shop", "api", "token"): "s3cr3t-token"})
    with LocalHttpServer(
        {"/check": lambda req: Reply(200, {"healthy": True, "echo": req.body.decode()})}
    ) as server:
        spec = WebMetric.model_validate(
            {
                "url": server.url("/check"),
                "method": "POST",
                "body": '{"q": 1}',
                "headers": [
                    {"key": "X-Plain", "value": "yes"},
                    {
                        "key": "Authorization",
                        "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}},
                    },
                ],
                "jsonPath": "{$.healthy}",
            }
        )
        observation = asyncio.run(PROVIDERS["web"].observe(spec, context(secrets), Deadline(5)))
        sent = server.requests[0]
    assert observation == Observation(True)
    assert sent.method == "POST"
    assert sent.body == b'{"q": 1}'
    assert sent.headers["X-Plain"] == "yes"
    assert sent.headers["Authorization"] == "s3cr3t-token"


def test_web_provider_does_not_retry_a_client_error() -> None:
    with LocalHttpServer({"/x": lambda req: Reply(404, {"error": "nope"})}) as server:
        spec = WebMetric(url=server.url("/x"))
        with pytest.raises(HttpStatusError) as raised:
            asyncio.run(PROVIDERS["web"].observe(spec, context(), Deadline(5)))
        assert server.hits("/x") == 1
    assert raised.value.status == 404


def test_web_provider_retries_a_server_error_and_succeeds() -> None:
    answers = [Reply(503, "busy", {"Retry-After": "0"}), Reply(200, {"v": 3})]
    with LocalHttpServer({"/x": lambda req: answers.pop(0)}) as server:
        spec = WebMetric(url=server.url("/x"), json_path="$.v")
        observation = asyncio.run(PROVIDERS["web"].observe(spec, context(), Deadline(5)))
        assert server.hits("/x") == 2
    assert observation == Observation(3)


def test_a_slow_web_server_is_an_error_within_the_deadline_not_a_hang() -> None:
    with LocalHttpServer({}) as server:

        def never(req: Request) -> Reply:
            server.release.wait(30)
            return Reply(200, {"v": 1})

        server.routes["/slow"] = never
        run = run_of(metric("slow", provider=web(server.url("/slow"), jsonPath="$.v")))
        started = time.monotonic()
        results = asyncio.run(
            measure(
                run,
                [Due("slow")],
                deadline=Deadline(1.0),
                secrets=FakeSecrets(),
                policy=AccessPolicy(call_timeout=0.3, backoff_base=0.01),
            )
        )
        took = time.monotonic() - started
    assert took < 2.0
    assert [r.phase for r in results] == ["Error"]
    assert "deadline" in results[0].message or "gave up" in results[0].message


# --- prometheus -----------------------------------------------------------------------------------


def test_prometheus_fails_over_from_a_dead_address() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with LocalHttpServer({"/api/v1/query": lambda req: vector("0.005")}) as server:
        spec = PrometheusMetric(addresses=[dead, server.url()], query="sum(rate(errors[1m]))")
        observation = asyncio.run(PROVIDERS["prometheus"].observe(spec, context(), Deadline(5)))
        assert server.requests[0].query["query"] == ["sum(rate(errors[1m]))"]
    assert observation == Observation([0.005])


def test_prometheus_with_every_address_dead_gives_up() -> None:
    spec = PrometheusMetric(
        addresses=[f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"], query="up"
    )
    with pytest.raises(GaveUp, match="attempts used up"):
        asyncio.run(PROVIDERS["prometheus"].observe(spec, context(), Deadline(5)))


def test_prometheus_sends_a_bearer_token_and_does_not_retry_a_bad_query() -> None:
    secrets = FakeSecrets({("shop", "prom", "token"): "tok-123\n"})

    def answer(req: Request) -> Reply:
        if req.query["query"] == ["bad("]:
            return Reply(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
        return Reply(
            200, {"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "7"]}}
        )

    with LocalHttpServer({"/api/v1/query": answer}) as server:
        auth = {"bearerToken": {"name": "prom", "key": "token"}}
        good = PrometheusMetric(address=server.url(), query="scalar(x)", authentication=auth)
        assert asyncio.run(
            PROVIDERS["prometheus"].observe(good, context(secrets), Deadline(5))
        ) == Observation(7.0)
        assert server.requests[-1].headers["Authorization"] == "Bearer tok-123"
        bad = PrometheusMetric(address=server.url(), query="bad(")
        with pytest.raises(HttpStatusError, match="parse error"):
            asyncio.run(PROVIDERS["prometheus"].observe(bad, context(secrets), Deadline(5)))
        assert server.hits("/api/v1/query") == 2


def test_prometheus_basic_auth_and_custom_headers() -> None:
    secrets = FakeSecrets({("shop", "prom", "password"): "pw"})
    with LocalHttpServer({"/api/v1/query": lambda req: vector("1")}) as server:
        spec = PrometheusMetric.model_validate(
            {
                "address": server.url(),
                "query": "up",
                "headers": [{"key": "X-Scope-OrgID", "value": "team-a"}],
                "authentication": {
                    "basic": {
                        "username": "herdsman",
                        "password": {"name": "prom", "key": "password"},
                    }
                },
            }
        )
        asyncio.run(PROVIDERS["prometheus"].observe(spec, context(secrets), Deadline(5)))
        sent = server.requests[0].headers
    assert sent["X-Scope-OrgID"] == "team-a"
    assert sent["Authorization"] == "Basic " + base64.b64encode(b"herdsman:pw").decode()


def test_a_slow_prometheus_is_an_error_within_the_deadline() -> None:
    with LocalHttpServer({}) as server:

        def stall(req: Request) -> Reply:
            server.release.wait(30)
            return vector("1")

        server.routes["/api/v1/query"] = stall
        run = run_of(metric("latency", provider=prometheus("up", [server.url()])))
        started = time.monotonic()
        results = asyncio.run(
            measure(
                run,
                [Due("latency")],
                deadline=Deadline(1.2),
                secrets=FakeSecrets(),
                policy=AccessPolicy(call_timeout=0.4, backoff_base=0.01),
            )
        )
        took = time.monotonic() - started
    assert took < 2.5
    assert results[0].phase == "Error"


# --- measure ---------------------------------------------------------------------------------------


def test_measure_fills_args_and_context_and_masks_secret_values() -> None:
    secrets = FakeSecrets({("shop", "creds", "key"): "hunter2-very-secret"})
    with LocalHttpServer(
        {"/m": lambda req: Reply(500, f"bad key {req.query['key'][0]}")}
    ) as server:
        run = run_of(
            metric(
                "health",
                provider=web(
                    server.url("/m?key={{args.key}}&svc={{args.svc}}&g={{rollout.canaryGroup}}")
                ),
            ),
            metric("typo", provider=web(server.url("/m?x={{args.nope}}"))),
            args=[
                {"name": "svc", "value": "checkout"},
                {"name": "key", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "key"}}},
            ],
        )
        results = asyncio.run(
            measure(
                run,
                [Due("health"), Due("typo")],
                deadline=Deadline(5),
                secrets=secrets,
                policy=FAST,
            )
        )
        sent = server.requests[0].query
    assert sent["svc"] == ["checkout"]
    assert sent["g"] == ["checkout-v002"]
    assert sent["key"] == ["hunter2-very-secret"]
    health, typo = results
    assert health.phase == "Error"
    assert "hunter2" not in health.message
    assert "***" in health.message
    assert typo.phase == "Error"
    assert "unknown placeholder {{args.nope}}" in typo.message
    assert secrets.reads == [("shop", "creds", "key")]


def test_measure_evaluates_conditions_on_what_it_measured() -> None:
    with LocalHttpServer({"/api/v1/query": lambda req: vector("0.2")}) as server:
        run = run_of(
            metric(
                "good", provider=prometheus("a", [server.url()]), successCondition="result[0] < 0.5"
            ),
            metric(
                "bad", provider=prometheus("b", [server.url()]), successCondition="result[0] < 0.1"
            ),
            metric(
                "both",
                provider=prometheus("c", [server.url()]),
                successCondition="result[0] < 0.1",
                failureCondition="result[0] > 0.9",
            ),
        )
        results = asyncio.run(
            measure(
                run,
                [Due("good"), Due("bad"), Due("both")],
                deadline=Deadline(5),
                secrets=FakeSecrets(),
            )
        )
    assert [(r.metric, r.phase) for r in results] == [
        ("good", "Successful"),
        ("bad", "Failed"),
        ("both", "Inconclusive"),
    ]
    assert results[0].value == "[0.2]"


def test_judged_metrics_sample_both_groups_with_the_group_placeholder() -> None:
    def answer(req: Request) -> Reply:
        group = req.query["query"][0].split('"')[1]
        base = 1.0 if group.endswith("baseline") else 2.0
        values = [[1.7e9 + i, str(base)] for i in range(5)]
        return Reply(
            200,
            {
                "status": "success",
                "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]},
            },
        )

    with LocalHttpServer({"/api/v1/query_range": answer}) as server:
        run = run_of(
            metric(
                "p99",
                provider=prometheus('latency{group="{{group}}"}', [server.url()]),
                judge={"direction": "increase"},
            )
        )
        results = asyncio.run(
            measure(
                run,
                [Due("p99", ("baseline", "canary"))],
                deadline=Deadline(5),
                secrets=FakeSecrets(),
            )
        )
        queried = sorted(r.query["query"][0] for r in server.requests)
    assert queried == ['latency{group="checkout-v001-baseline"}', 'latency{group="checkout-v002"}']
    assert results[0].phase is None
    assert results[0].samples == {"baseline": [1.0] * 5, "canary": [2.0] * 5}
    assert results[0].timestamps == {"baseline": [1.7e9 + i for i in range(5)]} | {
        "canary": [1.7e9 + i for i in range(5)]
    }


def test_tls_settings_come_from_the_spec_and_the_ca_from_a_secret() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    secrets = FakeSecrets({("shop", "prom-ca", "ca.crt"): pem})
    with_ca = PrometheusMetric.model_validate(
        {"address": "https://prom:9090", "query": "up", "ca": {"name": "prom-ca", "key": "ca.crt"}}
    )
    conn = asyncio.run(connection(with_ca, context(secrets), Deadline(5)))
    assert isinstance(conn.verify, str)
    assert Path(conn.verify).read_text() == pem
    insecure = PrometheusMetric(address="https://prom:9090", query="up", insecure=True)
    assert asyncio.run(connection(insecure, context(secrets), Deadline(5))).verify is False
    plain = PrometheusMetric(address="https://prom:9090", query="up")
    assert asyncio.run(connection(plain, context(secrets), Deadline(5))).verify is True


def test_every_provider_field_has_a_registered_provider() -> None:
    assert sorted(PROVIDERS) == sorted(to_snake(name) for name in PROVIDER_FIELDS)
    provider, spec = provider_for(Metric.model_validate(metric("w", provider=web("http://x"))))
    assert provider.key == "web"
    assert isinstance(spec, WebMetric)


def test_a_metric_whose_provider_is_missing_is_an_error_measurement() -> None:
    run = run_of(metric("m"))
    results = asyncio.run(
        measure(
            run, [Due("m"), Due("ghost")], deadline=Deadline(5), secrets=FakeSecrets(), providers={}
        )
    )
    assert [r.phase for r in results] == ["Error", "Error"]
    assert "no provider 'prometheus'" in results[0].message
    assert "no metric 'ghost'" in results[1].message


@pytest.mark.parametrize(
    ("provider", "path", "kind"),
    [
        (
            {"datadog": {"query": "a", "apiVersoin": "v2"}},
            "provider.datadog.apiVersoin",
            "Unknown field",
        ),
        ({"newRelic": {"query": "q", "profle": "x"}}, "provider.newRelic.profle", "Unknown field"),
        (
            {"prometheus": {"address": "http://p", "query": "up", "rangeQuery": {"stepp": "1m"}}},
            "provider.prometheus.rangeQuery.stepp",
            "Unknown field",
        ),
        (
            {"web": {"url": "http://w", "authentication": {"oauth2": {"tokenUrl": "http://t"}}}},
            "provider.web.authentication.oauth2.clientId",
            "Required value",
        ),
        (
            {"datadog": {"apiVersion": "v1", "queries": {"a": "x"}}},
            "provider.datadog.apiVersion",
            "Invalid value",
        ),
    ],
)
def test_lint_refuses_bad_provider_fields_naming_them(
    provider: dict[str, object], path: str, kind: str
) -> None:
    from herdsman.cli.lint import lint_object

    body = {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "t"},
        "spec": {
            "metrics": [{"name": "m", "successCondition": "result < 1", "provider": provider}]
        },
    }
    errors = lint_object(body).errors
    assert any(e.path == f"spec.metrics[0].{path}" and e.kind == kind for e in errors), errors
