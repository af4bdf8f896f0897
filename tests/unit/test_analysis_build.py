"""The AnalysisRun a rollout's analysis becomes (herdsman.cluster.analysis.Analysis.build):
arguments resolved from the server groups and the Rollout, metadata as Argo sets it, and a run
that cannot be built made an Error that names the argument instead of a failing reconcile."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from herdsman.api.rollout import Rollout, RolloutAnalysis
from herdsman.cluster.analysis import Analysis
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
