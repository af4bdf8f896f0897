"""Rollouts with names longer than a label value (issue 11), on the real control plane.

The objects keep their whole names (`<rollout>-v002`, `<rollout>-v001-baseline`,
`<rollout>-v002-step1-a0`); every label and selector that names them carries label_value() of
the name, which the API server admits and which the operator finds them by again.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V1, IMAGE_V2, IMAGE_V3, Rollouts, service
from herdsman.cli import actions
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES, SERVICES
from herdsman.naming import (
    LABEL_GROUP,
    LABEL_ROLLOUT,
    MAX_ROLLOUT_NAME,
    analysis_run_name,
    baseline_name,
    group_name,
    label_value,
)

pytestmark = pytest.mark.e2e

JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"
LABEL_RUN = "herdsman.dev/analysis-run"

# 70 characters: longer than a label value, so the rollout's own label is shortened too.
LONG = "checkout-with-a-name-longer-than-any-label-value-kubernetes-admits-070"
assert len(LONG) == 70


def manifest(name: str, steps: list[dict[str, Any]], **canary: Any) -> dict[str, Any]:
    """Short Service names and app label: those are the user's, and must be valid as given."""
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "long"}},
            "template": {
                "metadata": {"labels": {"app": "long"}},
                "spec": {"containers": [{"name": "app", "image": IMAGE_V1}]},
            },
            "strategy": {
                "canary": {
                    "stableService": "long",
                    "canaryService": "long-canary",
                    "steps": steps,
                    **canary,
                }
            },
        },
    }


def create(rollouts: Rollouts, body: dict[str, Any]) -> None:
    """The Services first, selecting app=long: the harness would select app=<rollout name>,
    which is no label value for a long name."""
    for svc in ("long", "long-canary"):
        rollouts.rest.create(SERVICES.url(rollouts.ns), service(svc, "long"))
    rollouts.create(body)


def smoke_template(rollouts: Rollouts) -> None:
    """A Job metric: its Job's name and labels are derived from the (long) run name."""
    job = {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "containers": [{"name": "check", "image": "busybox", "command": ["true"]}],
                "restartPolicy": "Never",
            }
        },
    }
    body = {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke"},
        "spec": {"metrics": [{"name": "smoke", "provider": {"job": {"spec": job}}}]},
    }
    rollouts.rest.create(ANALYSIS_TEMPLATES.url(rollouts.ns), body)


def assert_labels_name_groups(rollouts: Rollouts, name: str) -> set[str]:
    """Every group's labels and its pods' carry label values of the group's and rollout's
    names; the groups' names."""
    groups = rollouts.groups(name)
    assert groups, f"no server groups found by {LABEL_ROLLOUT}={label_value(name)}"
    for rs_name, rs in groups.items():
        labels = rs["metadata"]["labels"]
        assert labels[LABEL_GROUP] == label_value(rs_name), rs_name
        assert labels[LABEL_ROLLOUT] == label_value(name)
        assert rs["spec"]["selector"]["matchLabels"][LABEL_GROUP] == label_value(rs_name)
    short = {label_value(g) for g in groups}
    pods = rollouts.pods(name)
    assert pods
    assert {p["metadata"]["labels"][LABEL_GROUP] for p in pods} <= short
    return set(groups)


def test_a_long_named_canary_with_a_baseline_and_analysis_completes_and_aborts(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    smoke_template(rollouts)
    steps = [
        {"setWeight": 25},
        {"analysis": {"templates": [{"templateName": "smoke"}]}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    create(rollouts, manifest(LONG, steps, baseline=True))
    v1, v2, v3 = (group_name(LONG, r) for r in (1, 2, 3))
    assert len(label_value(v1)) == 63
    assert label_value(v1) != v1
    rollouts.wait_healthy(v1, name=LONG, timeout=120)
    assert rollouts.selector("long")[LABEL_GROUP] == label_value(v1)

    rollouts.set_image(IMAGE_V2, name=LONG)
    seen_groups: set[str] = set()
    seen_jobs: list[dict[str, Any]] = []

    def paused_at_the_end(status: dict[str, Any]) -> bool:
        seen_groups.update(rollouts.groups(LONG))
        seen_jobs.extend(rollouts.rest.list(JOBS.format(ns=rollouts.ns)))
        return status.get("phase") == "Paused" and status.get("step") == "4/4"

    rollouts.wait(paused_at_the_end, name=LONG, timeout=180, what="paused at 4/4")
    # Every owned object was created under its whole name, and found again by its labels.
    assert {v1, v2, baseline_name(LONG, 1)} <= seen_groups
    assert assert_labels_name_groups(rollouts, LONG) >= {v1, v2, baseline_name(LONG, 1)}
    status = rollouts.status(LONG)
    assert status["canaryServerGroup"] == v2
    assert status["baselineServerGroup"] == baseline_name(LONG, 1)
    assert rollouts.selector("long-canary")[LABEL_GROUP] == label_value(v2)
    assert rollouts.selector("long")[LABEL_GROUP] == label_value(v1)
    run_name = analysis_run_name(LONG, 2, "step", 1, 0)
    run = rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, run_name))
    assert run is not None, f"no AnalysisRun {run_name}"
    assert run["status"]["phase"] == "Successful"
    assert run["metadata"]["labels"][LABEL_ROLLOUT] == label_value(LONG)
    # The measurement's Job: a name of at most 63, labelled with the run's label value.
    assert seen_jobs, "the analysis step made no Job"
    job = seen_jobs[0]
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["labels"][LABEL_RUN] == label_value(run_name)
    assert job["metadata"]["ownerReferences"][0]["name"] == run_name
    # ... and deleted by that label once the run ended.
    rollouts.wait(
        lambda _: not rollouts.rest.list(JOBS.format(ns=rollouts.ns)),
        name=LONG,
        timeout=60,
        what="the run's Jobs deleted",
    )

    actions.promote(rollouts.rest, rollouts.ns, LONG)
    rollouts.wait_healthy(v2, name=LONG, timeout=120)
    rollouts.wait(
        lambda _: (
            rollouts.sizes(LONG).get(v2) == (4, 4)
            and all(size == (0, 0) for g, size in rollouts.sizes(LONG).items() if g != v2)
        ),
        name=LONG,
        timeout=120,
        what="v002 alone serves",
    )
    assert rollouts.selector("long")[LABEL_GROUP] == label_value(v2)
    assert operator.logged(LONG, "RolloutCompleted").count("RolloutCompleted") == 1

    # A third revision, aborted at its last pause: traffic and pods back to v002.
    rollouts.set_image(IMAGE_V3, name=LONG)
    rollouts.wait_phase("Paused", name=LONG, step="4/4", timeout=180)
    assert baseline_name(LONG, 2) in rollouts.groups(LONG)
    actions.abort(rollouts.rest, rollouts.ns, LONG)
    status = rollouts.wait(
        lambda s: s.get("phase") == "Degraded" and s.get("weights", {}).get("stable") == 100,
        name=LONG,
        timeout=120,
        what="aborted",
    )
    assert "aborted by user" in status["message"]
    rollouts.wait(
        lambda _: (
            rollouts.sizes(LONG).get(v2) == (4, 4)
            and all(size == (0, 0) for g, size in rollouts.sizes(LONG).items() if g != v2)
        ),
        name=LONG,
        timeout=120,
        what="the canary and its baseline gone",
    )
    assert v3 in rollouts.groups(LONG)
    assert rollouts.selector("long")[LABEL_GROUP] == label_value(v2)
    assert rollouts.selector("long-canary")[LABEL_GROUP] == label_value(v2)
    assert operator.logged(LONG, "RolloutAborted").count("RolloutAborted") == 1
    assert not operator.errors()


def test_a_rollout_with_a_name_of_the_maximum_length_rolls_out(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    name = ("max-" + "n" * MAX_ROLLOUT_NAME)[: MAX_ROLLOUT_NAME - 1] + "x"
    assert len(name) == MAX_ROLLOUT_NAME
    steps = [{"setWeight": 50}, {"pause": {"duration": "1s"}}]
    create(rollouts, manifest(name, steps, baseline=True))
    v1, v2 = group_name(name, 1), group_name(name, 2)
    rollouts.wait_healthy(v1, name=name, timeout=120)
    rollouts.set_image(IMAGE_V2, name=name)
    seen: set[str] = set()

    def healthy_v2(status: dict[str, Any]) -> bool:
        seen.update(rollouts.groups(name))
        return status.get("phase") == "Healthy" and status.get("stableServerGroup") == v2

    rollouts.wait(healthy_v2, name=name, timeout=120, what=f"{v2} healthy")
    assert {v1, v2, baseline_name(name, 1)} <= seen
    assert v2 in assert_labels_name_groups(rollouts, name)
    assert rollouts.selector("long")[LABEL_GROUP] == label_value(v2)
    assert not operator.errors()
