"""The Experiment's decide(): its lifecycle as Argo Rollouts documents it, one situation each."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herdsman.api.experiment import Experiment
from herdsman.engine.experiment import (
    ExperimentDecision,
    ExperimentRunView,
    ExperimentWorld,
    TemplateGroup,
    decide,
    pod_hash,
    replica_set_name,
    run_name,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def template(name: str, replicas: int = 1, image: str = "app:1") -> dict[str, Any]:
    return {
        "name": name,
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "demo"}},
        "template": {
            "metadata": {"labels": {"app": "demo"}},
            "spec": {"containers": [{"name": "app", "image": image}]},
        },
    }


def experiment(**spec: Any) -> Experiment:
    body: dict[str, Any] = {
        "metadata": {"name": "exp", "namespace": "default", "creationTimestamp": T0.isoformat()},
        "spec": {"templates": [template("baseline"), template("canary", image="app:2")], **spec},
    }
    return Experiment.from_body(body)


def apply(exp: Experiment, d: ExperimentDecision) -> Experiment:
    """The experiment as stored once the decision's status is written."""
    return exp.model_copy(update={"status": d.status})


def up(exp: Experiment, available: bool = True) -> tuple[TemplateGroup, ...]:
    """Every template's ReplicaSet exists (available or not)."""
    return tuple(
        TemplateGroup(
            name=replica_set_name("exp", t.name),
            template=t.name,
            pod_hash=pod_hash("exp", t),
            replicas=t.replicas,
            ready=t.replicas if available else 0,
            available=t.replicas if available else 0,
        )
        for t in exp.spec.templates
    )


def run(analysis: str, phase: str, message: str = "") -> ExperimentRunView:
    return ExperimentRunView(run_name("exp", analysis), analysis, phase, message)


def test_first_pass_creates_one_replica_set_per_template_and_waits() -> None:
    exp = experiment(duration="1m")
    d = decide(exp, ExperimentWorld(), T0)
    assert [(g.name, g.template, g.replicas) for g in d.create_groups] == [
        ("exp-baseline", "baseline", 1),
        ("exp-canary", "canary", 1),
    ]
    assert d.status.phase == "Pending"
    assert not d.create_runs
    assert [row.status for row in d.status.template_statuses] == ["Progressing", "Progressing"]
    # The progress deadline (600s by default) is the next thing due.
    assert d.requeue_after == 600


def test_pod_hashes_differ_per_template_and_from_the_plain_template() -> None:
    exp = experiment()
    a, b = exp.spec.templates
    assert pod_hash("exp", a) != pod_hash("exp", b)
    assert pod_hash("exp", a) != pod_hash("other", a)


def test_running_once_available_starts_analyses_and_ends_after_duration() -> None:
    exp = experiment(
        duration="1m",
        analyses=[
            {
                "name": "compare",
                "templateName": "mann-whitney",
                "args": [
                    {"name": "canary-hash", "value": "{{templates.canary.podTemplateHash}}"},
                    {"name": "plain", "value": "x"},
                ],
            }
        ],
    )
    exp = apply(exp, decide(exp, ExperimentWorld(), T0))
    groups = up(exp)
    d = decide(exp, ExperimentWorld(groups=groups), T0 + timedelta(seconds=5))
    assert d.status.phase == "Running"
    assert d.status.available_at == T0 + timedelta(seconds=5)
    assert [r.name for r in d.create_runs] == ["exp-compare"]
    args = {a.name: a.value for a in d.create_runs[0].args}
    assert args == {"canary-hash": pod_hash("exp", exp.spec.templates[1]), "plain": "x"}
    assert d.requeue_after == 60
    exp = apply(exp, d)
    world = ExperimentWorld(groups=groups, runs=(run("compare", "Running"),))
    d = decide(exp, world, T0 + timedelta(seconds=30))
    assert d.status.phase == "Running"
    assert not d.create_runs
    d = decide(exp, world, T0 + timedelta(seconds=66))
    assert d.status.phase == "Successful"
    # The unfinished (not required) run is terminated; the pods stay 30s more.
    assert d.terminate_runs == ["exp-compare"]
    assert not d.scale
    assert d.requeue_after == 30
    exp = apply(exp, d)
    d = decide(exp, world, T0 + timedelta(seconds=97))
    assert d.scale == {"exp-baseline": 0, "exp-canary": 0}
    assert d.status.phase == "Successful"


@pytest.mark.parametrize("phase", ["Failed", "Error", "Inconclusive"])
def test_an_unsuccessful_run_ends_the_experiment_with_its_phase(phase: str) -> None:
    exp = experiment(
        duration="1h", analyses=[{"name": "a", "templateName": "t"}], scaleDownDelaySeconds=0
    )
    exp = apply(exp, decide(exp, ExperimentWorld(), T0))
    groups = up(exp)
    exp = apply(exp, decide(exp, ExperimentWorld(groups=groups), T0))
    world = ExperimentWorld(groups=groups, runs=(run("a", phase, "too many errors"),))
    d = decide(exp, world, T0 + timedelta(seconds=10))
    assert d.status.phase == phase
    assert "exp-a" in d.status.message
    assert "too many errors" in d.status.message
    assert d.scale == {"exp-baseline": 0, "exp-canary": 0}
    assert {row.status for row in d.status.template_statuses} == {
        "Error" if phase == "Error" else "Failed"
    }


def test_without_duration_it_completes_when_the_required_analyses_do() -> None:
    exp = experiment(
        analyses=[
            {"name": "req", "templateName": "t", "requiredForCompletion": True},
            {"name": "side", "templateName": "t"},
        ]
    )
    exp = apply(exp, decide(exp, ExperimentWorld(), T0))
    groups = up(exp)
    exp = apply(exp, decide(exp, ExperimentWorld(groups=groups), T0))
    world = ExperimentWorld(groups=groups, runs=(run("req", "Running"), run("side", "Running")))
    assert decide(exp, world, T0 + timedelta(hours=5)).status.phase == "Running"
    world = replace(world, runs=(run("req", "Successful"), run("side", "Running")))
    d = decide(exp, world, T0 + timedelta(hours=5))
    assert d.status.phase == "Successful"
    assert d.terminate_runs == ["exp-side"]


def test_duration_over_still_waits_for_required_analyses() -> None:
    exp = experiment(
        duration="10s",
        analyses=[{"name": "req", "templateName": "t", "requiredForCompletion": True}],
    )
    exp = apply(exp, decide(exp, ExperimentWorld(), T0))
    groups = up(exp)
    exp = apply(exp, decide(exp, ExperimentWorld(groups=groups), T0))
    world = ExperimentWorld(groups=groups, runs=(run("req", "Running"),))
    assert decide(exp, world, T0 + timedelta(seconds=60)).status.phase == "Running"
    world = ExperimentWorld(groups=groups, runs=(run("req", "Successful"),))
    assert decide(exp, world, T0 + timedelta(seconds=61)).status.phase == "Successful"


def test_neither_duration_nor_required_analysis_runs_until_terminated() -> None:
    exp = experiment()
    exp = apply(exp, decide(exp, ExperimentWorld(), T0))
    groups = up(exp)
    exp = apply(exp, decide(exp, ExperimentWorld(groups=groups), T0))
    d = decide(exp, ExperimentWorld(groups=groups), T0 + timedelta(days=3))
    assert d.status.phase == "Running"
    exp.spec.terminate = True
    d = decide(exp, ExperimentWorld(groups=groups), T0 + timedelta(days=3))
    assert d.status.phase == "Successful"
    assert d.status.message == "terminated"


def test_templates_not_available_by_the_progress_deadline_fail_it() -> None:
    exp = experiment(progressDeadlineSeconds=30)
    exp = apply(exp, decide(exp, ExperimentWorld(), T0))
    groups = up(exp, available=False)
    d = decide(exp, ExperimentWorld(groups=groups), T0 + timedelta(seconds=29))
    assert d.status.phase == "Pending"
    assert d.requeue_after == 1
    d = decide(exp, ExperimentWorld(groups=groups), T0 + timedelta(seconds=30))
    assert d.status.phase == "Failed"
    assert "baseline, canary" in d.status.message
    assert "progressDeadlineSeconds" in d.status.message


def test_a_missing_analysis_template_is_invalid_spec_and_nothing_is_created() -> None:
    exp = experiment(analyses=[{"name": "a", "templateName": "nope"}])
    world = ExperimentWorld(missing_templates=frozenset({("nope", False)}))
    d = decide(exp, world, T0)
    assert d.status.phase == "Error"
    assert "spec.analyses[0].templateName" in d.status.message
    assert "'nope' not found" in d.status.message
    assert any(c.type == "InvalidSpec" and c.status == "True" for c in d.status.conditions)
    assert not d.create_groups
    assert not d.create_runs
    assert not d.scale


def test_an_argument_naming_an_unknown_template_is_invalid_spec() -> None:
    exp = experiment(
        analyses=[
            {
                "name": "a",
                "templateName": "t",
                "args": [{"name": "h", "value": "{{templates.canery.podTemplateHash}}"}],
            }
        ]
    )
    d = decide(exp, ExperimentWorld(), T0)
    assert d.status.phase == "Error"
    assert "spec.analyses[0].args[0].value: unknown template 'canery'" in d.status.message
    assert not d.create_groups


def test_a_finished_experiment_stays_finished_and_creates_nothing() -> None:
    exp = experiment(duration="1s", scaleDownDelaySeconds=0)
    exp = apply(exp, decide(exp, ExperimentWorld(), T0))
    groups = up(exp)
    exp = apply(exp, decide(exp, ExperimentWorld(groups=groups), T0))
    exp = apply(exp, decide(exp, ExperimentWorld(groups=groups), T0 + timedelta(seconds=2)))
    assert exp.status.phase == "Successful"
    # Even with its ReplicaSets gone: a finished experiment never starts again.
    d = decide(exp, ExperimentWorld(), T0 + timedelta(seconds=60))
    assert not d.create_groups
    assert not d.create_runs
    assert d.status.phase == "Successful"


def test_a_replica_set_resized_by_hand_is_put_back() -> None:
    exp = experiment()
    exp = apply(exp, decide(exp, ExperimentWorld(), T0))
    groups = tuple(replace(g, replicas=3) for g in up(exp))
    d = decide(exp, ExperimentWorld(groups=groups), T0)
    assert d.scale == {"exp-baseline": 1, "exp-canary": 1}
    assert d.status.phase == "Pending"


def test_a_decision_is_a_pure_function_of_its_inputs() -> None:
    exp = experiment(duration="1m", analyses=[{"name": "a", "templateName": "t"}])
    groups = up(exp)
    first = decide(exp, ExperimentWorld(groups=groups), T0)
    second = decide(exp, ExperimentWorld(groups=groups), T0)
    assert first.status == second.status
    assert first.create_runs == second.create_runs
    # The input is never mutated.
    assert exp.status.phase is None
