"""Argo's template semantics: {{args.*}} in counts, limits and durations, failureLimit -1,
consecutiveSuccessLimit, measurementRetention, template composition, and the Job provider's
decisions (with a fake Job client; tests/e2e/test_job_metrics.py runs the real one)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import pytest

from harness.analysis import CONTEXT, T0, metric, run_of, template
from herdsman.analysis.measure import measure
from herdsman.analysis.providers.base import SecretResolver
from herdsman.analysis.providers.job import JobCreationRefused, job_name
from herdsman.analysis.run_build import RunBuildError, build_run, flatten_templates
from herdsman.analysis.runs import Due, MeasurementResult, due, record
from herdsman.api.analysis import AnalysisTemplate, Argument, MeasurementPhase
from herdsman.api.analysis_ref import AnalysisTemplateRef, SecretKeyRef
from herdsman.api.analysis_run import AnalysisRun
from herdsman.cluster.budget import Deadline

pytestmark = pytest.mark.unit

S = timedelta(seconds=1)


def measured(name: str, phase: MeasurementPhase, at: datetime) -> MeasurementResult:
    return MeasurementResult(metric=name, phase=phase, started_at=at, finished_at=at)


def drive(run: AnalysisRun, phases: Iterable[MeasurementPhase], *, until: int = 120) -> AnalysisRun:
    queue = list(phases)
    now = T0
    while now <= T0 + until * S and not run.completed:
        results = [
            measured(d.metric, queue.pop(0) if queue else "Successful", now) for d in due(run, now)
        ]
        run = run.model_copy(update={"status": record(run, results, now)})
        now += S
    return run


# --- {{args.*}} in the metric's own fields ------------------------------------------------------


def test_placeholders_in_count_limits_and_durations_are_filled_when_the_run_is_built() -> None:
    run = run_of(
        metric(
            count="{{args.count}}",
            interval="{{args.interval}}",
            initialDelay="{{ args.interval }}",
            failureLimit="{{args.limit}}",
        ),
        args=[
            {"name": "count", "value": "3"},
            {"name": "interval", "value": "2s"},
            {"name": "limit", "value": "-1"},
        ],
    )
    built = run.spec.metrics[0]
    assert (built.count, built.interval, built.initial_delay, built.failure_limit) == (
        3,
        "2s",
        "2s",
        -1,
    )
    assert [d.metric for d in due(run, T0 + 2 * S)] == ["m"]
    assert due(run, T0 + S) == []


@pytest.mark.parametrize(
    ("fields", "args", "reason"),
    [
        ({"count": "{{args.count}}"}, [{"name": "count", "value": "many"}], "count"),
        ({"interval": "{{args.i}}", "count": 2}, [{"name": "i", "value": "soon"}], "interval"),
        ({"count": "{{args.nope}}"}, [], "no template declares"),
    ],
)
def test_a_placeholder_that_does_not_become_a_value_is_refused(
    fields: dict[str, Any], args: list[dict[str, Any]], reason: str
) -> None:
    with pytest.raises(RunBuildError, match=reason):
        run_of(metric(**fields), args=args)


def test_a_secret_argument_cannot_be_a_count() -> None:
    secret = {"name": "n", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    with pytest.raises(RunBuildError, match="Secret argument"):
        build_run(
            [template(metric(count="{{args.n}}", interval="1s"), args=[secret])],
            [],
            CONTEXT,
            name="r",
        )


def test_the_schema_takes_placeholders_but_not_words() -> None:
    template(metric(count="{{args.count}}", interval="{{args.i}}"), args=[{"name": "count"}])
    with pytest.raises(ValueError, match="neither an integer"):
        template(metric(count="five", interval="1s"))
    with pytest.raises(ValueError, match="at least -1"):
        template(metric(failureLimit=-2))


# --- limits ----------------------------------------------------------------------------------------


def test_failure_limit_minus_one_never_fails_the_metric() -> None:
    run = drive(run_of(metric(count=4, interval="1s", failureLimit=-1)), ["Failed"] * 3)
    result = run.status.metric_results[0]
    assert (result.failed, result.successful, result.phase) == (3, 1, "Successful")


def test_consecutive_success_limit_completes_early_or_is_inconclusive() -> None:
    early = drive(
        run_of(metric(count=10, interval="1s", consecutiveSuccessLimit=2, failureLimit=5)),
        ["Failed", "Successful", "Successful"],
    )
    assert early.status.phase == "Successful"
    assert early.status.metric_results[0].count == 3
    never = drive(
        run_of(metric(count=4, interval="1s", consecutiveSuccessLimit=3, failureLimit=5)),
        ["Successful", "Failed", "Successful", "Failed"],
    )
    assert never.status.phase == "Inconclusive"
    assert "consecutiveSuccessLimit" in never.status.metric_results[0].message


def test_measurement_retention_keeps_as_many_as_asked() -> None:
    run = drive(
        run_of(
            metric("a", count=6, interval="1s"),
            metric("b", count=6, interval="1s"),
            measurementRetention=[{"metricName": "a", "limit": 2}],
        ),
        [],
    )
    kept = {r.name: len(r.measurements) for r in run.status.metric_results}
    assert kept == {"a": 2, "b": 6}


def test_a_metric_without_conditions_succeeds_when_measured() -> None:
    body = metric()
    body.pop("successCondition")
    run = drive(run_of(body), [])
    assert run.status.phase == "Successful"


# --- composition ----------------------------------------------------------------------------------


def test_templates_include_others_as_argo_flattens_them() -> None:
    error_rate = template(metric("errors"), name="error-rate", args=[{"name": "svc"}])
    shared = template(metric("latency"), name="shared", kind="ClusterAnalysisTemplate")
    rates = AnalysisTemplate.model_validate(
        {
            "metadata": {"name": "rates"},
            "spec": {
                "metrics": [metric("success")],
                "templates": [
                    {"templateName": "error-rate"},
                    {"templateName": "shared", "clusterScope": True},
                ],
            },
        }
    )
    known = {("error-rate", False): error_rate, ("shared", True): shared}

    def lookup(ref: AnalysisTemplateRef) -> AnalysisTemplate | None:
        return known.get((ref.template_name, ref.cluster_scope))

    flat = flatten_templates([rates], lookup)
    run = build_run(flat, [Argument(name="svc", value="checkout")], CONTEXT, name="r")
    assert [m.name for m in run.spec.metrics] == ["success", "errors", "latency"]
    assert [a.name for a in run.spec.args] == ["svc"]

    only_refs = AnalysisTemplate.model_validate(
        {"metadata": {"name": "only"}, "spec": {"templates": [{"templateName": "missing"}]}}
    )
    with pytest.raises(RunBuildError, match="missing, which does not exist"):
        flatten_templates([only_refs], lookup)
    loop = AnalysisTemplate.model_validate(
        {
            "metadata": {"name": "error-rate"},
            "spec": {"templates": [{"templateName": "error-rate"}]},
        }
    )
    with pytest.raises(RunBuildError, match="include each other"):
        flatten_templates([loop], lambda ref: loop)


# --- the Job provider -------------------------------------------------------------------------------


class FakeJobs:
    def __init__(self, refuse: str = "") -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.refuse = refuse

    async def get_job(
        self, namespace: str, name: str, *, deadline: Deadline
    ) -> dict[str, Any] | None:
        return self.jobs.get(name)

    async def create_job(
        self, namespace: str, body: dict[str, Any], *, deadline: Deadline
    ) -> dict[str, Any]:
        if self.refuse:
            raise JobCreationRefused(self.refuse)
        self.jobs[body["metadata"]["name"]] = body
        return body

    def finish(self, condition: str) -> None:
        for job in self.jobs.values():
            job["status"] = {"conditions": [{"type": condition, "status": "True", "reason": "X"}]}


class NoSecrets:
    async def get(self, namespace: str, ref: SecretKeyRef, *, deadline: Deadline) -> str:
        raise LookupError("no secrets here")


JOB = {
    "job": {
        "metadata": {"labels": {"team": "a"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "containers": [{"name": "c", "image": "busybox"}],
                    "restartPolicy": "Never",
                }
            },
        },
    }
}


def job_run() -> AnalysisRun:
    body = metric("smoke", provider=JOB)
    body.pop("successCondition")
    run = run_of(body)
    run.metadata.uid = "uid-1"
    return run


def step(run: AnalysisRun, jobs: FakeJobs, now: datetime) -> AnalysisRun:
    secrets: SecretResolver = NoSecrets()
    results = asyncio.run(
        measure(
            run, due(run, now), deadline=Deadline(5), secrets=secrets, jobs=jobs, clock=lambda: now
        )
    )
    return run.model_copy(update={"status": record(run, results, now)})


@pytest.mark.parametrize(("condition", "phase"), [("Complete", "Successful"), ("Failed", "Failed")])
def test_a_job_measurement_waits_for_the_job_and_takes_its_verdict(
    condition: str, phase: str
) -> None:
    jobs = FakeJobs()
    run = step(job_run(), jobs, T0)
    name = job_name(run.metadata.name or "", "smoke", 1)
    assert list(jobs.jobs) == [name]
    created = jobs.jobs[name]
    assert created["metadata"]["labels"]["team"] == "a"
    assert created["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    result = run.status.metric_results[0]
    assert result.in_progress is not None
    assert result.in_progress.name == name
    assert result.phase == "Running"
    assert result.count == 0
    assert due(run, T0 + S) == []  # looked at again after the poll interval
    run = step(run, jobs, T0 + 2 * S)  # still running
    assert run.status.metric_results[0].in_progress is not None
    jobs.finish(condition)
    run = step(run, jobs, T0 + 4 * S)
    assert run.status.phase == phase
    result = run.status.metric_results[0]
    assert result.in_progress is None
    assert result.measurements[0].started_at == T0


def test_infrastructure_trouble_is_inconclusive_naming_the_field() -> None:
    refused = step(
        job_run(), FakeJobs(refuse="Invalid: spec.template.spec.containers[0].image"), T0
    )
    measurement = refused.status.metric_results[0].measurements[0]
    assert measurement.phase == "Inconclusive"
    assert "provider.job.spec" in measurement.message
    jobs = FakeJobs()
    run = step(job_run(), jobs, T0)
    jobs.jobs.clear()  # deleted under us
    run = step(run, jobs, T0 + 2 * S)
    measurement = run.status.metric_results[0].measurements[0]
    assert measurement.phase == "Inconclusive"
    assert "deleted" in measurement.message


def test_job_names_fit_a_label_value() -> None:
    assert job_name("r", "m", 1) == "r-m-1"
    long = job_name("x" * 60, "metric", 12)
    assert len(long) <= 63
    assert long.endswith("-12")
    assert long != job_name("x" * 61, "metric", 12)


def test_due_is_unchanged_for_other_providers() -> None:
    assert due(run_of(metric()), T0) == [Due("m")]
