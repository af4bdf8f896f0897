"""The analysis CRDs on a real API server: bad templates are refused with a message naming the
field, a ported Argo template is accepted, and a run's status round-trips through the status
subresource and shows in `kubectl get`."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from harness.analysis import CONTEXT, metric, run_of
from harness.argo_corpus import corpus_dir, documents
from harness.cluster import Cluster
from herdsman.analysis.runs import MeasurementResult, record
from herdsman.api.analysis_run import AnalysisRun
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES, KubeError

pytestmark = pytest.mark.e2e

# A template as an Argo Rollouts user writes it (only the apiVersion changed).
ARGO_TEMPLATE: dict[str, Any] = {
    "apiVersion": "herdsman.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "success-rate"},
    "spec": {
        "args": [
            {"name": "service-name"},
            {"name": "token", "valueFrom": {"secretKeyRef": {"name": "prom", "key": "t"}}},
        ],
        "metrics": [
            {
                "name": "success-rate",
                "interval": "1m",
                "count": 5,
                "successCondition": "result[0] >= 0.95",
                "failureLimit": 3,
                "provider": {
                    "prometheus": {
                        "address": "http://prometheus.monitoring:9090",
                        "query": 'sum(rate(http_requests_total{service="{{args.service-name}}",code!~"5.*"}[5m]))',
                    }
                },
            },
            {
                "name": "health",
                "successCondition": "result == true",
                "provider": {"web": {"url": "http://svc/health", "jsonPath": "{$.ok}"}},
            },
            {
                "name": "p99",
                "interval": "1m",
                "count": 3,
                "judge": {"direction": "increase", "allowedIncrease": 1.1, "critical": True},
                "provider": {
                    "prometheus": {
                        "addresses": ["http://a:9090", "http://b:9090"],
                        "query": 'p99{g="{{group}}"}',
                    }
                },
            },
        ],
        "dryRun": [{"metricName": "health"}],
    },
}


def variant(change: Any) -> dict[str, Any]:
    body = copy.deepcopy(ARGO_TEMPLATE)
    change(body)
    return body


def first_metric(body: dict[str, Any]) -> dict[str, Any]:
    metric_body: dict[str, Any] = body["spec"]["metrics"][0]
    return metric_body


BAD_TEMPLATES = {
    "two providers": (
        lambda b: first_metric(b)["provider"].update({"web": {"url": "http://x"}}),
        "provider: set exactly one of prometheus, web",
    ),
    "count without interval": (
        lambda b: first_metric(b).pop("interval"),
        "a count above 1 needs an interval",
    ),
    "duplicate metric": (
        lambda b: b["spec"]["metrics"].append(copy.deepcopy(b["spec"]["metrics"][0])),
        "metric names must be unique",
    ),
    "judge with a condition": (
        lambda b: b["spec"]["metrics"][2].update({"successCondition": "true"}),
        "a judged metric takes no conditions",
    ),
    "judged query without group": (
        lambda b: b["spec"]["metrics"][2]["provider"]["prometheus"].update({"query": "p99"}),
        "must select the server group with {{group}}",
    ),
    "address and addresses": (
        lambda b: first_metric(b)["provider"]["prometheus"].update({"addresses": ["http://c"]}),
        "set exactly one of address or addresses",
    ),
    "argument with value and valueFrom": (
        lambda b: b["spec"]["args"][1].update({"value": "x"}),
        "argument: set at most one of value, valueFrom",
    ),
    "dry run of a ghost": (
        lambda b: b["spec"]["dryRun"].append({"metricName": "ghost"}),
        "dryRun names a metric",
    ),
    "a GET with a body": (
        lambda b: b["spec"]["metrics"][1]["provider"]["web"].update({"body": "{}"}),
        "a GET request has no body",
    ),
    "unknown provider field": (
        lambda b: b["spec"]["metrics"].__setitem__(
            0,
            {
                "name": "dd",
                "successCondition": "result < 1",
                "provider": {"datadog": {"query": "avg:x{*}", "apiVersoin": "v2"}},
            },
        ),
        'unknown field "spec.metrics[0].provider.datadog.apiVersoin"',
    ),
    "datadog formula without queries": (
        lambda b: first_metric(b).update(
            provider={"datadog": {"apiVersion": "v2", "query": "a", "formula": "a * 2"}}
        ),
        "a formula needs queries",
    ),
    "kayenta with a condition": (
        lambda b: first_metric(b).update(
            provider={
                "kayenta": {
                    "address": "http://kayenta",
                    "application": "a",
                    "canaryConfigName": "c",
                    "configurationAccountName": "c",
                    "metricsAccountName": "m",
                    "storageAccountName": "s",
                    "threshold": {"pass": 90, "marginal": 75},
                    "scopes": [
                        {
                            "name": "default",
                            "controlScope": {"scope": "x", "region": "r", "step": 60},
                            "experimentScope": {"scope": "y", "region": "r", "step": 60},
                        }
                    ],
                }
            }
        ),
        "a kayenta metric takes no conditions",
    ),
    "judged cloudwatch without group": (
        lambda b: b["spec"]["metrics"][2].update(
            provider={
                "cloudWatch": {
                    "metricDataQueries": [
                        {
                            "id": "e",
                            "metricStat": {
                                "metric": {"metricName": "errors"},
                                "period": 60,
                                "stat": "Sum",
                            },
                        }
                    ]
                }
            }
        ),
        "(in a metricStat dimension's value)",
    ),
    "condition too long": (
        lambda b: first_metric(b).update({"successCondition": "true && " * 600 + "true"}),
        "successCondition",
    ),
}


STRICT_DRY_RUN = "?dryRun=All&fieldValidation=Strict"  # as kubectl sends it by default

# Argo's own provider documentation, one template per provider (../shared/argo-corpus).
ARGO_PROVIDER_DOCS = [
    f"docs__analysis__{name}.yaml#0"
    for name in (
        "cloudwatch.md__L66",
        "datadog.md__L5",
        "graphite.md__L5",
        "influxdb.md__L5",
        "newrelic.md__L8",
        "prometheus.md__L111",
        "prometheus.md__L160",
        "prometheus.md__L44",
        "skywalking.md__L8",
        "wavefront.md__L5",
        "web.md__L143",
    )
]


@pytest.mark.parametrize("doc_id", ARGO_PROVIDER_DOCS)
def test_argos_provider_templates_are_accepted(
    cluster: Cluster, namespace: str, doc_id: str
) -> None:
    doc = next(d for d in documents(corpus_dir()) if d.id == doc_id)
    created = cluster.rest.create(ANALYSIS_TEMPLATES.url(namespace) + STRICT_DRY_RUN, doc.body)
    given = doc.body["spec"]["metrics"][0]["provider"]
    stored = created["spec"]["metrics"][0]["provider"]
    assert _kept(given, stored), f"the API server dropped or changed fields: {given} -> {stored}"


def _kept(given: Any, stored: Any) -> bool:
    """Everything `given` holds is in `stored` unchanged (defaults may be added)."""
    if isinstance(given, dict):
        return isinstance(stored, dict) and all(
            key in stored and _kept(value, stored[key]) for key, value in given.items()
        )
    if isinstance(given, list):
        return (
            isinstance(stored, list)
            and len(given) == len(stored)
            and all(_kept(a, b) for a, b in zip(given, stored, strict=True))
        )
    return bool(given == stored)


def test_a_ported_argo_template_is_accepted(cluster: Cluster, namespace: str) -> None:
    created = cluster.rest.create(ANALYSIS_TEMPLATES.url(namespace), ARGO_TEMPLATE)
    assert created["spec"]["metrics"][0]["consecutiveErrorLimit"] == 4  # Argo's default, applied
    assert created["spec"]["metrics"][0]["inconclusiveLimit"] == 0


@pytest.mark.parametrize("case", sorted(BAD_TEMPLATES))
def test_a_bad_template_is_refused_naming_the_problem(
    cluster: Cluster, namespace: str, case: str
) -> None:
    change, message = BAD_TEMPLATES[case]
    with pytest.raises(KubeError) as refused:
        cluster.rest.create(ANALYSIS_TEMPLATES.url(namespace) + STRICT_DRY_RUN, variant(change))
    # Schema and CEL refusals are 422; strict field validation refuses unknown fields with 400.
    assert refused.value.status == (400 if "unknown field" in message else 422)
    assert message in str(refused.value)


def test_a_run_and_its_status_round_trip_through_the_api_server(
    cluster: Cluster, namespace: str
) -> None:
    run = run_of(
        metric("errors", interval="30s", count=3),
        metric(
            "p99",
            provider={"prometheus": {"address": "http://p", "query": 'x{g="{{group}}"}'}},
            judge={},
        ),
        args=[{"name": "token", "valueFrom": {"secretKeyRef": {"name": "prom", "key": "t"}}}],
        context=CONTEXT.model_copy(update={"namespace": namespace}),
    )
    created = cluster.rest.create(ANALYSIS_RUNS.url(namespace), run.to_wire())
    assert "status" not in created or not created["status"].get("phase")
    stored = AnalysisRun.from_body(created)
    assert stored.spec == run.spec  # secret args stay references, nothing is lost

    now = datetime.now(UTC)
    baseline = [0.1 + i * 0.001 for i in range(20)]
    results = [
        MeasurementResult(
            "errors", "Failed", now, now, value="[0.2]", message="successCondition is false"
        ),
        MeasurementResult(
            "p99", None, now, now, samples={"baseline": baseline, "canary": baseline}
        ),
    ]
    status = record(stored, results, now)
    assert status.phase == "Failed"
    written = cluster.rest.patch(
        ANALYSIS_RUNS.url(namespace, stored.metadata.name, "status"),
        {"status": status.model_dump(by_alias=True, exclude_none=True, mode="json")},
    )
    again = AnalysisRun.from_body(written)
    assert again.status.phase == "Failed"
    assert again.status.metric_results[1].judgement is not None
    assert again.status.score is not None

    table = cluster.kubectl("get", "analysisruns", "-n", namespace, "-o", "wide")
    header, row = table.splitlines()[:2]
    for column in ("PHASE", "METRICS", "SCORE", "ROLLOUT", "AGE"):
        assert column in header
    assert "Failed" in row
    assert "1 failed" in row
    assert (
        cluster.kubectl("get", "har", "-n", namespace, "-o", "name")
        .strip()
        .endswith(stored.metadata.name)
    )


def test_an_invalid_status_phase_is_refused(cluster: Cluster, namespace: str) -> None:
    run = run_of(metric("m"), context=CONTEXT.model_copy(update={"namespace": namespace}))
    created = cluster.rest.create(ANALYSIS_RUNS.url(namespace), run.to_wire())
    with pytest.raises(KubeError) as refused:
        cluster.rest.patch(
            ANALYSIS_RUNS.url(namespace, created["metadata"]["name"], "status"),
            {"status": {"phase": "Promoted"}},
        )
    assert refused.value.status == 422
