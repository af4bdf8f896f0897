"""The AnalysisRun a rollout's analysis becomes (herdsman.cluster.analysis.Analysis.build):
arguments resolved from the server groups and the Rollout, metadata as Argo sets it, and a run
that cannot be built made an Error that names the argument instead of a failing reconcile."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from herdsman.analysis.runs import retention_limit
from herdsman.api.analysis_ref import RolloutAnalysis
from herdsman.api.analysis_run import AnalysisRun
from herdsman.api.rollout import Rollout
from herdsman.cli.lint import lint_object
from herdsman.cluster.analysis import Analysis, problems
from herdsman.cluster.budget import AccessPolicy
from herdsman.cluster.observe import Observed
from herdsman.engine.world import NewAnalysisRun, ServerGroup, World
from herdsman.naming import LABEL_ROLLOUT, template_hash

pytestmark = pytest.mark.unit

BODY: dict[str, Any] = {
    "apiVersion": "herdsman.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "checkout", "namespace": "shop", "uid": "u1", "labels": {"team": "a"}},
    "spec": {
        "replicas": 4,
        "selector": {"matchLabels": {"app": "checkout"}},
        "template": {
            "metadata": {"labels": {"app": "checkout"}},
            "spec": {"containers": [{"name": "app", "image": "app:v2"}]},
        },
        "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
    },
}
TEMPLATE: dict[str, Any] = {
    "apiVersion": "herdsman.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "t", "namespace": "shop"},
    "spec": {
        "args": [{"name": "stable"}, {"name": "latest"}, {"name": "team"}],
        "metrics": [
            {"name": "m", "provider": {"web": {"url": "http://x/{{args.stable}}"}}},
        ],
    },
}


def build(
    analysis: dict[str, Any], groups: tuple[ServerGroup, ...], body: dict[str, Any] = BODY
) -> dict[str, Any]:
    rollout = Rollout.from_body(body)
    request = NewAnalysisRun(
        name="checkout-v002-step1-a0",
        kind="step",
        revision=2,
        step_index=1,
        attempt=0,
        analysis=RolloutAnalysis.model_validate(analysis),
        groups={"canary": "checkout-v002", "stable": "checkout-v001"},
    )
    observed = Observed(world=World(groups=groups), templates={("t", False): TEMPLATE}, body=body)
    analysis_layer = Analysis(kube=None, policy=AccessPolicy())  # type: ignore[arg-type]
    return asyncio.run(analysis_layer.build(rollout, request, observed))


ARGS = [
    {"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}},
    {"name": "latest", "valueFrom": {"podTemplateHashValue": "Latest"}},
    {"name": "team", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
]
GROUPS = (
    ServerGroup(name="checkout-v001", revision=1, pod_hash="stablehash"),
    ServerGroup(name="checkout-v002", revision=2, pod_hash="latesthash"),
)


def test_hash_and_field_arguments_become_literals_in_the_run() -> None:
    run = build({"templates": [{"templateName": "t"}], "args": ARGS}, GROUPS)
    values = {a["name"]: a["value"] for a in run["spec"]["args"]}
    assert values == {"stable": "stablehash", "latest": "latesthash", "team": "a"}
    assert "status" not in run


def test_latest_is_the_templates_hash_when_the_new_group_is_not_observed_yet() -> None:
    run = build({"templates": [{"templateName": "t"}], "args": ARGS}, GROUPS[:1])
    values = {a["name"]: a["value"] for a in run["spec"]["args"]}
    assert values["latest"] == template_hash(Rollout.from_body(BODY).spec.pod_template)


def test_analysis_run_metadata_labels_and_annotations_land_on_the_run() -> None:
    run = build(
        {
            "templates": [{"templateName": "t"}],
            "args": ARGS,
            "analysisRunMetadata": {
                "labels": {"cost-center": "42", LABEL_ROLLOUT: "hijack"},
                "annotations": {"owner": "payments"},
            },
        },
        GROUPS,
    )
    labels = run["metadata"]["labels"]
    assert labels["cost-center"] == "42"
    assert labels["app"] == "checkout"  # the selector's labels, as Argo adds them
    assert labels[LABEL_ROLLOUT] == "checkout"  # Herdsman's own labels win
    assert run["metadata"]["annotations"] == {"owner": "payments"}


def test_an_argument_that_cannot_be_resolved_makes_an_error_run_naming_it() -> None:
    run = build({"templates": [{"templateName": "t"}], "args": ARGS}, GROUPS[1:])
    assert run["status"]["phase"] == "Error"
    assert "argument 'stable'" in run["status"]["message"]
    assert "podTemplateHashValue Stable" in run["status"]["message"]
    assert run["spec"]["terminate"] is True
    assert run["metadata"]["ownerReferences"][0]["uid"] == "u1"


# --- the rollout's own measurementRetention and dryRun (Argo's RolloutAnalysis fields) ----------

RETAINING_TEMPLATE: dict[str, Any] = {
    **TEMPLATE,
    "spec": {
        **TEMPLATE["spec"],
        "metrics": [
            *TEMPLATE["spec"]["metrics"],
            {"name": "n", "provider": {"web": {"url": "http://x/n"}}},
        ],
        "measurementRetention": [{"metricName": "n", "limit": 7}],
        "dryRun": [{"metricName": "n"}],
    },
}


def build_with(analysis: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    rollout = Rollout.from_body(BODY)
    request = NewAnalysisRun(
        name="checkout-v002-step1-a0",
        kind="step",
        revision=2,
        step_index=1,
        attempt=0,
        analysis=RolloutAnalysis.model_validate(analysis),
        groups={"canary": "checkout-v002", "stable": "checkout-v001"},
    )
    observed = Observed(world=World(groups=GROUPS), templates={("t", False): template}, body=BODY)
    layer = Analysis(kube=None, policy=AccessPolicy())  # type: ignore[arg-type]
    return asyncio.run(layer.build(rollout, request, observed))


def test_rollout_measurement_retention_and_dry_run_come_first_in_the_run() -> None:
    run = build_with(
        {
            "templates": [{"templateName": "t"}],
            "args": ARGS,
            "measurementRetention": [{"metricName": "m", "limit": 3}],
            "dryRun": [{"metricName": "m"}],
        },
        RETAINING_TEMPLATE,
    )
    assert run["spec"]["measurementRetention"] == [
        {"metricName": "m", "limit": 3},
        {"metricName": "n", "limit": 7},
    ]
    assert run["spec"]["dryRun"] == [{"metricName": "m"}, {"metricName": "n"}]
    built = AnalysisRun.model_validate(run)
    assert retention_limit(built, "m") == 3
    assert retention_limit(built, "n") == 7


def test_a_rollout_wildcard_retention_covers_every_metric() -> None:
    run = build_with(
        {
            "templates": [{"templateName": "t"}],
            "args": ARGS,
            "measurementRetention": [{"metricName": "*", "limit": 2}],
        },
        TEMPLATE,
    )
    assert retention_limit(AnalysisRun.model_validate(run), "m") == 2


@pytest.mark.parametrize("field", ["measurementRetention", "dryRun"])
def test_a_metric_named_by_both_the_rollout_and_the_template_is_an_error_run(field: str) -> None:
    rule: dict[str, Any] = {"metricName": "n"}
    if field == "measurementRetention":
        rule["limit"] = 1
    run = build_with(
        {"templates": [{"templateName": "t"}], "args": ARGS, field: [rule]},
        RETAINING_TEMPLATE,
    )
    assert run["status"]["phase"] == "Error"
    assert f"{field}: two rules name metric 'n'" in run["status"]["message"]


@pytest.mark.parametrize("field", ["measurementRetention", "dryRun"])
def test_a_rule_for_a_metric_no_template_defines_is_invalid_spec(field: str) -> None:
    rule: dict[str, Any] = {"metricName": "nope"}
    if field == "measurementRetention":
        rule["limit"] = 1
    body = {
        **BODY,
        "spec": {
            **BODY["spec"],
            "strategy": {
                "canary": {
                    "steps": [
                        {
                            "analysis": {
                                "templates": [{"templateName": "t"}],
                                "args": ARGS,
                                field: [rule],
                            }
                        }
                    ]
                }
            },
        },
    }
    rollout = Rollout.from_body(body)
    observed = Observed(world=World(groups=GROUPS), templates={("t", False): TEMPLATE}, body=body)
    found = problems(rollout, observed, body)
    assert any(f"{field} names unknown metrics: nope" in p for p in found), found


def rollout_doc(analysis_extra: dict[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in BODY.items() if k != "metadata"}
    doc["metadata"] = {"name": "checkout"}
    doc["spec"] = {
        **BODY["spec"],
        "strategy": {
            "canary": {
                "steps": [{"analysis": {"templates": [{"templateName": "t"}], **analysis_extra}}]
            }
        },
    }
    return doc


def test_lint_accepts_a_rollout_measurement_retention() -> None:
    doc = lint_object(rollout_doc({"measurementRetention": [{"metricName": "m", "limit": 5}]}))
    assert doc.errors == []


@pytest.mark.parametrize(
    ("extra", "path", "reason"),
    [
        (
            {"measurementRetention": [{"metricName": "m", "limit": -1}]},
            "spec.strategy.canary.steps[0].analysis.measurementRetention[0].limit",
            "Invalid value",
        ),
        (
            {
                "measurementRetention": [
                    {"metricName": "m", "limit": 1},
                    {"metricName": "m", "limit": 2},
                ]
            },
            "spec.strategy.canary.steps[0].analysis.measurementRetention[1]",
            "Duplicate value",
        ),
        (
            {"dryRun": [{"metricName": "m"}, {"metricName": "m"}]},
            "spec.strategy.canary.steps[0].analysis.dryRun[1]",
            "Duplicate value",
        ),
    ],
)
def test_lint_refuses_bad_rollout_rules_naming_the_field(
    extra: dict[str, Any], path: str, reason: str
) -> None:
    doc = lint_object(rollout_doc(extra))
    assert [(e.path, e.kind) for e in doc.errors] == [(path, reason)], doc.errors
