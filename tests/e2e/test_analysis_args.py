"""Arguments a Rollout resolves when it creates an AnalysisRun, on the real control plane, as in
Argo Rollouts: `podTemplateHashValue` (the stable and the new server group's pod-template hash,
Herdsman's label herdsman.dev/pod-template-hash) and `fieldRef` (a field of the Rollout). The
values land in the run as literals and reach the measurement: the Job the metric creates has
them in its command line. The analysis's `analysisRunMetadata` labels and annotates the run.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.local_http import LocalHttpServer, Reply
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from herdsman.cli.lint import lint_object
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES, ROLLOUTS, KubeError
from herdsman.naming import LABEL_HASH

pytestmark = pytest.mark.e2e

JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"
RUN = "checkout-v002-step1-a0"


def echo_template(rollouts: Rollouts, args: list[str]) -> None:
    """A Job metric whose command line shows every argument it was given."""
    body = {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "echo"},
        "spec": {
            "args": [{"name": a} for a in args],
            "metrics": [
                {
                    "name": "echo",
                    "provider": {
                        "job": {
                            "spec": {
                                "backoffLimit": 0,
                                "template": {
                                    "spec": {
                                        "restartPolicy": "Never",
                                        "containers": [
                                            {
                                                "name": "echo",
                                                "image": "busybox",
                                                "command": ["echo"],
                                                "args": [f"{a}={{{{args.{a}}}}}" for a in args],
                                            }
                                        ],
                                    }
                                },
                            }
                        }
                    },
                }
            ],
        },
    }
    rollouts.rest.create(ANALYSIS_TEMPLATES.url(rollouts.ns), body)


def start(rollouts: Rollouts, analysis: dict[str, Any], labels: dict[str, str]) -> None:
    manifest = rollout(steps=[{"setWeight": 20}, {"analysis": analysis}, {"setWeight": 50}])
    manifest["metadata"]["labels"] = labels
    rollouts.create(manifest)
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)


def job_args(rollouts: Rollouts) -> list[str]:
    found: list[list[str]] = []

    def made(_: Any) -> bool:
        for job in rollouts.rest.list(JOBS.format(ns=rollouts.ns)):
            found.append(job["spec"]["template"]["spec"]["containers"][0]["args"])
        return bool(found)

    rollouts.wait(made, timeout=60, what="the measurement's Job")
    return found[0]


def test_pod_template_hash_and_field_ref_arguments_reach_the_run_and_its_job(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    echo_template(rollouts, ["stable-hash", "latest-hash", "team", "replicas"])
    start(
        rollouts,
        {
            "templates": [{"templateName": "echo"}],
            "args": [
                {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}},
                {"name": "latest-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                {
                    "name": "team",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}},
                },
                {"name": "replicas", "valueFrom": {"fieldRef": {"fieldPath": "spec.replicas"}}},
            ],
            "analysisRunMetadata": {
                "labels": {"cost-center": "42"},
                "annotations": {"example.com/owner": "payments"},
            },
        },
        labels={"team": "payments"},
    )
    args = job_args(rollouts)
    groups = rollouts.groups()
    stable = groups["checkout-v001"]["metadata"]["labels"][LABEL_HASH]
    latest = groups["checkout-v002"]["metadata"]["labels"][LABEL_HASH]
    assert stable != latest
    expected = {"stable-hash": stable, "latest-hash": latest, "team": "payments", "replicas": "10"}
    assert args == [f"{k}={v}" for k, v in expected.items()]

    run = rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, RUN))
    assert run is not None
    assert {a["name"]: a["value"] for a in run["spec"]["args"]} == expected
    # The run is a snapshot: its arguments are literals, nothing is resolved again later.
    assert all("valueFrom" not in a for a in run["spec"]["args"])
    # analysisRunMetadata, and the selector's labels as Argo adds them.
    assert run["metadata"]["labels"]["cost-center"] == "42"
    assert run["metadata"]["labels"]["app"] == "checkout"
    assert run["metadata"]["annotations"]["example.com/owner"] == "payments"
    rollouts.wait_healthy("checkout-v002", timeout=90)


def test_a_field_ref_to_a_missing_label_is_an_invalid_spec_naming_the_argument(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    echo_template(rollouts, ["team"])
    analysis = {
        "templates": [{"templateName": "echo"}],
        "args": [
            {"name": "team", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}}
        ],
    }
    manifest = rollout(steps=[{"setWeight": 20}, {"analysis": analysis}, {"setWeight": 50}])
    manifest["metadata"]["labels"] = {"team": "payments"}
    rollouts.create(manifest)
    rollouts.wait_healthy("checkout-v001")
    # A new image and, in the same edit, the label the argument reads is gone.
    template = rollouts.get()["spec"]["template"]
    template["spec"]["containers"][0]["image"] = IMAGE_V2
    rollouts.rest.patch(
        ROLLOUTS.url(rollouts.ns, "checkout"),
        {"metadata": {"labels": {"team": None}}, "spec": {"template": template}},
    )
    status = rollouts.wait(
        lambda s: "InvalidSpec" in (s.get("message") or ""), timeout=30, what="InvalidSpec"
    )
    assert "argument 'team'" in status["message"], status["message"]
    assert "metadata.labels['team']" in status["message"], status["message"]
    # Nothing running was touched: no new group, no run, no Job; stable serves everything.
    assert set(rollouts.groups()) == {"checkout-v001"}
    assert rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, RUN)) is None
    assert not rollouts.rest.list(JOBS.format(ns=rollouts.ns))
    assert rollouts.status()["stableServerGroup"] == "checkout-v001"
    assert rollouts.selector("checkout")["herdsman.dev/server-group"] == "checkout-v001"

    # Putting the label back resumes the release, and the run reads the label's value.
    rollouts.rest.patch(
        ROLLOUTS.url(rollouts.ns, "checkout"), {"metadata": {"labels": {"team": "search"}}}
    )
    assert job_args(rollouts) == ["team=search"]
    rollouts.wait_healthy("checkout-v002", timeout=90)


def condition_template(rollouts: Rollouts, condition: str, *, create: bool) -> None:
    body: dict[str, Any] = {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "health"},
        "spec": {
            "metrics": [
                {
                    "name": "health",
                    "successCondition": condition,
                    "provider": {"web": {"url": "http://127.0.0.1:9/health", "jsonPath": "{$.ok}"}},
                }
            ]
        },
    }
    if create:
        rollouts.rest.create(ANALYSIS_TEMPLATES.url(rollouts.ns), body)
    else:
        rollouts.rest.patch(ANALYSIS_TEMPLATES.url(rollouts.ns, "health"), {"spec": body["spec"]})


def test_a_condition_that_does_not_compile_is_an_invalid_spec_naming_the_field(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    condition_template(rollouts, "result == true", create=True)
    manifest = rollout(
        steps=[
            {"setWeight": 20},
            {"analysis": {"templates": [{"templateName": "health"}]}},
            {"setWeight": 50},
        ]
    )
    rollouts.create(manifest)
    rollouts.wait_healthy("checkout-v001")
    # The template is edited into one whose condition cannot compile (the API server cannot
    # tell: a condition is a string to it), then a release starts.
    condition_template(rollouts, "result[0] >= ", create=False)
    rollouts.set_image(IMAGE_V2)
    status = rollouts.wait(
        lambda s: "InvalidSpec" in (s.get("message") or ""), timeout=30, what="InvalidSpec"
    )
    message = status["message"]
    assert "AnalysisTemplate health: spec.metrics[0].successCondition" in message, message
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    assert conditions["InvalidSpec"]["status"] == "True"
    # Nothing running was touched: no new group, no run; stable serves everything.
    assert set(rollouts.groups()) == {"checkout-v001"}
    assert rollouts.sizes()["checkout-v001"] == (10, 10)
    assert not rollouts.rest.list(ANALYSIS_RUNS.url(rollouts.ns))
    assert rollouts.selector("checkout")["herdsman.dev/server-group"] == "checkout-v001"

    # Fixed, the release goes on (the run starts and measures; the URL answers nothing, so
    # it errs, which pauses the rollout rather than promoting it).
    condition_template(rollouts, "result == true", create=False)
    rollouts.wait(
        lambda s: (
            "InvalidSpec" not in (s.get("message") or "") and "checkout-v002" in rollouts.groups()
        ),
        timeout=60,
        what="the release resumed",
    )


def test_a_rollout_measurement_retention_reaches_the_run_and_bounds_its_measurements(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    with LocalHttpServer({"/health": lambda _: Reply(200, {"errors": 0})}) as server:
        body = {
            "apiVersion": "herdsman.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "health"},
            "spec": {
                "metrics": [
                    {
                        "name": "errors",
                        "count": 5,
                        "interval": "1s",
                        "successCondition": "result < 0.05",
                        "provider": {
                            "web": {"url": server.url("/health"), "jsonPath": "{$.errors}"}
                        },
                    }
                ]
            },
        }
        rollouts.rest.create(ANALYSIS_TEMPLATES.url(rollouts.ns), body)
        start(
            rollouts,
            {
                "templates": [{"templateName": "health"}],
                "measurementRetention": [{"metricName": "errors", "limit": 2}],
            },
            labels={},
        )
        rollouts.wait_healthy("checkout-v002", timeout=120)
        run = rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, RUN))
        assert run is not None
        assert run["spec"]["measurementRetention"] == [{"metricName": "errors", "limit": 2}]
        assert run["status"]["phase"] == "Successful"
        (result,) = run["status"]["metricResults"]
        # Five measurements taken and counted; only the last two kept, as Argo keeps them.
        assert result["count"] == 5, result
        assert result["successful"] == 5, result
        assert len(result["measurements"]) == 2, result["measurements"]
        assert server.hits("/health") >= 5


def test_the_api_server_refuses_bad_rollout_measurement_retention_naming_the_field(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    for rules, field, reason in (
        ([{"metricName": "errors", "limit": -1}], "measurementRetention[0].limit", "greater"),
        (
            [{"metricName": "errors", "limit": 1}, {"metricName": "errors", "limit": 3}],
            "measurementRetention[1]",
            "Duplicate value",
        ),
    ):
        analysis = {"templates": [{"templateName": "health"}], "measurementRetention": rules}
        manifest = rollout(steps=[{"setWeight": 20}, {"analysis": analysis}])
        with pytest.raises(KubeError) as refused:
            rollouts.rest.create(ROLLOUTS.url(rollouts.ns), manifest)
        assert refused.value.status == 422
        message = str(refused.value)
        path = f"spec.strategy.canary.steps[1].analysis.{field}"
        assert path in message, message
        assert reason in message, message
        # lint says the same, at the same field.
        assert [e.path for e in lint_object(manifest).errors] == [path]
    assert rollouts.rest.get(ROLLOUTS.url(rollouts.ns, "checkout")) is None
