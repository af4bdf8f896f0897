"""AnalysisRuns as pure functions: building, scheduling, limits, phases, dry-run and no-data rules."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis import CONTEXT, T0, metric, run_of, template
from herdsman.analysis.run_build import RunBuildError, build_run, field_value
from herdsman.analysis.runs import Due, MeasurementResult, due, next_due_at, record
from herdsman.api.analysis import MEASUREMENT_HISTORY, Argument, MeasurementPhase
from herdsman.api.analysis_ref import AnalysisRunArgument, DryRunMetric
from herdsman.api.analysis_run import AnalysisRun, AnalysisRunSpec
from herdsman.api.judge import MAX_SERIES_POINTS

pytestmark = pytest.mark.unit

S = timedelta(seconds=1)


def measured(
    name: str, phase: MeasurementPhase, at: datetime, message: str = ""
) -> MeasurementResult:
    return MeasurementResult(
        metric=name, phase=phase, started_at=at, finished_at=at, value="1", message=message
    )


def apply(run: AnalysisRun, results: Iterable[MeasurementResult], now: datetime) -> AnalysisRun:
    """The run as the API server would hold it after the status write."""
    return run.model_copy(update={"status": record(run, list(results), now)})


def drive(
    run: AnalysisRun,
    script: Mapping[str, list[MeasurementPhase]],
    *,
    until: timedelta,
    tick: timedelta = S,
) -> tuple[AnalysisRun, dict[str, int]]:
    """Reconcile every `tick`: measure what is due with the scripted phases (Successful when
    the script runs out), record, until the run completes or `until` passes."""
    now = T0
    taken: dict[str, int] = {}
    queues = {name: list(phases) for name, phases in script.items()}
    while now <= T0 + until and not run.completed:
        results = []
        for item in due(run, now):
            queue = queues.get(item.metric, [])
            results.append(measured(item.metric, queue.pop(0) if queue else "Successful", now))
            taken[item.metric] = taken.get(item.metric, 0) + 1
        run = apply(run, results, now)
        now += tick
    return run, taken


# --- building ---------------------------------------------------------------------------------------


def test_templates_merge_and_args_override_defaults() -> None:
    first = template(
        metric("errors", provider={"prometheus": {"address": "http://p", "query": "{{args.svc}}"}}),
        name="errors",
        args=[{"name": "svc"}, {"name": "window", "value": "1m"}],
    )
    second = template(metric("latency"), name="latency", args=[{"name": "window", "value": "1m"}])
    run = build_run(
        [first, second],
        [AnalysisRunArgument(name="svc", value="checkout")],
        CONTEXT,
        name="checkout-2-step-1",
        labels={"herdsman.dev/rollout": "checkout"},
        owner_references=[
            {
                "apiVersion": "herdsman.dev/v1alpha1",
                "kind": "Rollout",
                "name": "checkout",
                "uid": "u1",
            }
        ],
    )
    assert [m.name for m in run.spec.metrics] == ["errors", "latency"]
    assert {a.name: a.value for a in run.spec.args} == {"svc": "checkout", "window": "1m"}
    wire = run.to_wire()
    assert wire["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert wire["metadata"]["namespace"] == "shop"
    assert wire["spec"]["context"]["canaryGroup"] == "checkout-v002"


def test_duplicate_metric_names_across_templates_are_refused() -> None:
    with pytest.raises(
        RunBuildError, match="'errors' is defined by both AnalysisTemplate a and AnalysisTemplate b"
    ):
        build_run(
            [template(metric("errors"), name="a"), template(metric("errors"), name="b")],
            [],
            CONTEXT,
            name="r",
        )


def test_arguments_must_be_declared_and_given_a_value() -> None:
    declared = template(metric("m"), args=[{"name": "svc"}])
    with pytest.raises(RunBuildError, match="without a value: svc"):
        build_run([declared], [], CONTEXT, name="r")
    with pytest.raises(RunBuildError, match="'other' is not declared"):
        build_run(
            [declared],
            [Argument(name="svc", value="a"), Argument(name="other", value="b")],
            CONTEXT,
            name="r",
        )
    clash = template(metric("n"), name="u", args=[{"name": "svc", "value": "x"}])
    other = template(metric("o"), name="v", args=[{"name": "svc", "value": "y"}])
    with pytest.raises(RunBuildError, match="conflicting defaults"):
        build_run([clash, other], [], CONTEXT, name="r")


def test_secret_arguments_stay_references_and_field_refs_are_resolved() -> None:
    rollout = {
        "metadata": {"name": "checkout", "labels": {"app.kubernetes.io/name": "shop"}},
        "spec": {"template": {"spec": {"containers": [{"image": "app:v2"}]}}},
    }
    run = build_run(
        [template(metric("m"), args=[{"name": "token"}, {"name": "image"}, {"name": "app"}])],
        [
            AnalysisRunArgument.model_validate(
                {"name": "token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
            ),
            AnalysisRunArgument.model_validate(
                {
                    "name": "image",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "spec.template.spec.containers[0].image"}
                    },
                }
            ),
            AnalysisRunArgument.model_validate(
                {
                    "name": "app",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/name']"}
                    },
                }
            ),
        ],
        CONTEXT,
        name="r",
        rollout=rollout,
    )
    args = {a.name: a for a in run.spec.args}
    assert args["token"].value is None
    assert args["token"].value_from is not None
    assert args["token"].value_from.secret_key_ref.name == "s"
    assert args["image"].value == "app:v2"
    assert args["app"].value == "shop"
    with pytest.raises(RunBuildError, match="no field 'nope'"):
        field_value(rollout, "metadata.nope")


def hash_arg(name: str, which: str) -> AnalysisRunArgument:
    return AnalysisRunArgument.model_validate(
        {"name": name, "valueFrom": {"podTemplateHashValue": which}}
    )


def test_pod_template_hash_arguments_are_the_stable_and_latest_groups_hashes() -> None:
    declared = template(metric("m"), args=[{"name": "stable"}, {"name": "latest"}])
    run = build_run(
        [declared],
        [hash_arg("stable", "Stable"), hash_arg("latest", "Latest")],
        CONTEXT,
        name="r",
        pod_hashes={"Stable": "abc123", "Latest": "def456"},
    )
    assert {a.name: a.value for a in run.spec.args} == {"stable": "abc123", "latest": "def456"}
    # A literal value in the run, as in Argo: the run does not change if the groups do.
    assert all(a.value_from is None for a in run.spec.args)


def test_a_pod_template_hash_with_no_group_behind_it_is_an_error_naming_the_argument() -> None:
    declared = template(metric("m"), args=[{"name": "stable"}])
    with pytest.raises(RunBuildError, match=r"argument 'stable'.*podTemplateHashValue Stable"):
        build_run(
            [declared],
            [hash_arg("stable", "Stable")],
            CONTEXT,
            name="r",
            pod_hashes={"Stable": None, "Latest": "def456"},
        )


def test_a_field_ref_to_a_missing_field_is_an_error_naming_the_argument() -> None:
    declared = template(metric("m"), args=[{"name": "team"}])
    given = AnalysisRunArgument.model_validate(
        {"name": "team", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}}
    )
    with pytest.raises(RunBuildError, match=r"argument 'team': valueFrom.fieldRef .*'team'"):
        build_run([declared], [given], CONTEXT, name="r", rollout={"metadata": {"labels": {}}})


def test_dry_run_must_name_existing_metrics() -> None:
    with pytest.raises(RunBuildError, match="unknown metrics: ghost"):
        build_run(
            [template(metric("m"))],
            [],
            CONTEXT,
            name="r",
            dry_run=[DryRunMetric(metric_name="ghost")],
        )


# --- scheduling -----------------------------------------------------------------------------------


def test_initial_delay_and_interval_set_the_schedule() -> None:
    run = run_of(metric("m", interval="30s", count=3, initialDelay="1m"))
    assert due(run, T0) == []
    assert next_due_at(run, T0) == T0 + 60 * S
    assert due(run, T0 + 60 * S) == [Due("m")]
    run = apply(run, [measured("m", "Successful", T0 + 60 * S)], T0 + 60 * S)
    assert due(run, T0 + 89 * S) == []
    assert next_due_at(run, T0 + 61 * S) == T0 + 90 * S
    assert due(run, T0 + 90 * S) == [Due("m")]


def test_count_completes_a_metric_and_a_completed_run_has_nothing_due() -> None:
    run, taken = drive(run_of(metric("m", interval="10s", count=3)), {}, until=timedelta(minutes=5))
    assert taken == {"m": 3}
    assert run.status.phase == "Successful"
    assert due(run, T0 + timedelta(hours=1)) == []
    assert next_due_at(run, T0 + timedelta(hours=1)) is None


def test_a_metric_without_interval_or_count_is_measured_once() -> None:
    run, taken = drive(run_of(metric("once")), {}, until=timedelta(minutes=1))
    assert taken == {"once": 1}
    assert run.status.phase == "Successful"


def test_a_metric_with_an_interval_and_no_count_runs_until_terminated() -> None:
    run, taken = drive(run_of(metric("bg", interval="10s")), {}, until=timedelta(minutes=2))
    assert not run.completed
    assert taken["bg"] >= 12
    run = run.model_copy(update={"spec": run.spec.model_copy(update={"terminate": True})})
    assert due(run, T0 + timedelta(minutes=3)) == []
    run = apply(run, [], T0 + timedelta(minutes=3))
    assert run.status.phase == "Successful"
    assert run.status.metric_results[0].message == "terminated"


def test_judged_metrics_are_due_for_both_groups() -> None:
    run = run_of(
        metric(
            "p99",
            provider={"prometheus": {"address": "http://p", "query": 'x{g="{{group}}"}'}},
            judge={},
        )
    )
    assert due(run, T0) == [Due("p99", ("baseline", "canary"))]


def test_an_error_is_retried_sooner_than_a_long_interval_and_does_not_use_up_the_count() -> None:
    run = run_of(metric("m", interval="5m", count=2))
    run = apply(run, [measured("m", "Error", T0, "connection refused")], T0)
    result = run.status.metric_results[0]
    assert (result.count, result.error, result.consecutive_error) == (0, 1, 1)
    assert next_due_at(run, T0) == T0 + 10 * S
    run = apply(run, [measured("m", "Successful", T0 + 10 * S)], T0 + 10 * S)
    assert run.status.metric_results[0].consecutive_error == 0
    assert next_due_at(run, T0 + 10 * S) == T0 + 10 * S + timedelta(minutes=5)


# --- limits and phases ------------------------------------------------------------------------------


def test_a_failure_beyond_the_limit_fails_the_run_at_once_without_waiting_for_count() -> None:
    run, taken = drive(
        run_of(
            metric("errors", interval="10s", count=100, failureLimit=1),
            metric("other", interval="10s", count=100),
        ),
        {"errors": ["Successful", "Failed", "Successful", "Failed"]},
        until=timedelta(hours=1),
    )
    assert run.status.phase == "Failed"
    assert taken["errors"] == 4
    assert run.status.metric_results[0].phase == "Failed"
    assert "failureLimit 1" in run.status.message
    # The other metric is closed with what it had: a finished run has no metric still running.
    assert run.status.metric_results[1].phase == "Successful"
    assert run.status.metric_results[1].message.startswith("run ended")
    assert run.status.run_summary.running == 0
    assert run.status.completed_at is not None


def test_inconclusive_beyond_the_limit_makes_the_run_inconclusive() -> None:
    run, _ = drive(
        run_of(metric("m", interval="10s", count=5, inconclusiveLimit=1)),
        {"m": ["Inconclusive", "Successful", "Inconclusive"]},
        until=timedelta(minutes=10),
    )
    assert run.status.phase == "Inconclusive"
    assert run.status.metric_results[0].inconclusive == 2


def test_consecutive_errors_beyond_the_limit_make_the_run_error() -> None:
    run, taken = drive(
        run_of(metric("m", interval="10s", count=5, consecutiveErrorLimit=2)),
        {"m": ["Error", "Error", "Successful", "Error", "Error", "Error"]},
        until=timedelta(minutes=10),
    )
    assert run.status.phase == "Error"
    assert taken["m"] == 6
    assert "consecutiveErrorLimit 2" in run.status.message


def test_failures_within_the_limit_still_succeed() -> None:
    run, _ = drive(
        run_of(metric("m", interval="10s", count=4, failureLimit=2)),
        {"m": ["Failed", "Successful", "Failed", "Successful"]},
        until=timedelta(minutes=10),
    )
    assert run.status.phase == "Successful"
    assert run.status.run_summary.successful == 1


def test_no_data_is_never_success_even_within_the_inconclusive_limit() -> None:
    run, _ = drive(
        run_of(metric("m", interval="10s", count=3, inconclusiveLimit=5)),
        {"m": ["Inconclusive"] * 3},
        until=timedelta(minutes=10),
    )
    assert run.status.phase == "Inconclusive"
    assert run.status.metric_results[0].message == "no successful measurement"


def test_dry_run_metrics_are_reported_but_never_decide() -> None:
    run, _ = drive(
        run_of(
            metric("new", count=2, interval="10s"),
            metric("trusted", count=2, interval="10s"),
            dryRun=[{"metricName": "new"}],
        ),
        {"new": ["Failed", "Failed"]},
        until=timedelta(minutes=10),
    )
    assert run.status.phase == "Successful"
    new = run.status.result("new")
    assert new is not None
    assert new.dry_run
    assert new.phase == "Failed"
    assert run.status.dry_run_summary.failed == 1
    assert run.status.run_summary.count == 1
    assert run.status.summary == "1/1 successful, 1 dry-run"


def test_a_run_of_only_dry_run_metrics_cannot_pass() -> None:
    run, _ = drive(
        run_of(metric("a", dryRun=True), metric("b"), dryRun=[{"metricName": "b"}]),
        {},
        until=timedelta(minutes=1),
    )
    assert run.status.phase == "Inconclusive"
    assert "every metric is dry-run" in run.status.message


def test_a_run_without_metrics_is_an_error() -> None:
    empty = AnalysisRun(
        spec=AnalysisRunSpec.model_construct(
            metrics=[], args=[], dry_run=[], scoring=None, terminate=False, context=CONTEXT
        )
    )
    status = record(empty, [], T0)
    assert status.phase == "Error"
    assert "no metrics" in status.message


def test_a_completed_run_ignores_late_results_and_keeps_its_phase() -> None:
    run, _ = drive(
        run_of(metric("m", failureLimit=0)), {"m": ["Failed"]}, until=timedelta(minutes=1)
    )
    assert run.status.phase == "Failed"
    later = record(
        run, [measured("m", "Successful", T0 + timedelta(hours=1))], T0 + timedelta(hours=1)
    )
    assert later == run.status


def test_measurement_history_is_bounded_but_counters_keep_everything() -> None:
    run, _ = drive(run_of(metric("m", interval="1s", count=25)), {}, until=timedelta(minutes=5))
    result = run.status.metric_results[0]
    assert len(result.measurements) == MEASUREMENT_HISTORY
    assert result.count == result.successful == 25


def test_record_leaves_the_run_it_was_given_untouched() -> None:
    run = run_of(metric("m"))
    before = run.model_dump()
    record(run, [measured("m", "Failed", T0)], T0)
    assert run.model_dump() == before


def test_the_status_is_a_valid_wire_object() -> None:
    run, _ = drive(
        run_of(metric("m", count=2, interval="5s"), metric("n")),
        {"m": ["Error"]},
        until=timedelta(minutes=1),
    )
    wire = run.to_wire()
    assert wire["status"]["phase"] == "Successful"
    assert wire["status"]["metricResults"][0]["consecutiveError"] == 0
    assert wire["status"]["metricResults"][0]["measurements"][0]["phase"] == "Error"
    assert AnalysisRun.from_body(wire).status == run.status


# --- properties -------------------------------------------------------------------------------------

phases = st.sampled_from(["Successful", "Failed", "Inconclusive", "Error"])


@settings(max_examples=120, deadline=None)
@given(
    script=st.lists(phases, max_size=30),
    count=st.integers(min_value=1, max_value=8),
    failure_limit=st.integers(min_value=0, max_value=3),
    inconclusive_limit=st.integers(min_value=0, max_value=3),
    error_limit=st.integers(min_value=0, max_value=4),
)
def test_phase_rules_hold_for_any_sequence_of_measurements(
    script: list[MeasurementPhase],
    count: int,
    failure_limit: int,
    inconclusive_limit: int,
    error_limit: int,
) -> None:
    run = run_of(
        metric(
            "m",
            interval="10s",
            count=count,
            failureLimit=failure_limit,
            inconclusiveLimit=inconclusive_limit,
            consecutiveErrorLimit=error_limit,
        )
    )
    final, taken = drive(run, {"m": list(script)}, until=timedelta(hours=2), tick=10 * S)
    result = final.status.metric_results[0]
    assert final.completed  # the script runs out into successes, so every run ends
    # Counters agree with each other.
    assert result.count == result.successful + result.failed + result.inconclusive
    assert result.count <= count
    assert taken.get("m", 0) == result.count + result.error
    # Success needs evidence and no limit broken.
    if final.status.phase == "Successful":
        assert result.successful >= 1
        assert result.failed <= failure_limit
        assert result.inconclusive <= inconclusive_limit
    # Fail fast: a run stops measuring the moment the failure limit is passed.
    if result.failed > failure_limit:
        assert final.status.phase == "Failed"
        assert final.status.metric_results[0].measurements[-1].phase == "Failed"
    if final.status.phase == "Error":
        assert result.consecutive_error == error_limit + 1


# --- judged metrics ---------------------------------------------------------------------------------


def noisy(center: float, n: int = 40, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-0.05, 0.05)) for _ in range(n)]


def judged(name: str, **fields: object) -> dict[str, object]:
    provider = {"prometheus": {"address": "http://p", "query": 'x{g="{{group}}"}'}}
    return metric(name, provider=provider, **fields)


def samples(
    name: str, baseline: list[float], canary: list[float], at: datetime
) -> MeasurementResult:
    return MeasurementResult(
        metric=name,
        phase=None,
        started_at=at,
        finished_at=at,
        samples={"baseline": baseline, "canary": canary},
    )


def test_a_judged_regression_fails_the_metric_and_is_scored() -> None:
    run = run_of(judged("p99", judge={"direction": "increase", "allowedIncrease": 1.2}))
    run = apply(run, [samples("p99", noisy(0.1), noisy(0.3, seed=2), T0)], T0)
    result = run.status.metric_results[0]
    assert result.judgement is not None
    assert result.judgement.classification == "High"
    assert result.measurements[-1].phase == "Failed"
    assert result.measurements[-1].value.startswith("baseline median 0.09")
    assert "(n=40)" in result.measurements[-1].value
    assert run.status.phase == "Failed"
    assert run.status.score is not None
    assert run.status.score.classification == "fail"


def test_a_judged_metric_without_change_passes_with_a_full_score() -> None:
    run = run_of(judged("p99", judge={"direction": "increase"}))
    run = apply(run, [samples("p99", noisy(0.1), noisy(0.1, seed=2), T0)], T0)
    assert run.status.metric_results[0].judgement is not None
    assert run.status.phase == "Successful"
    assert run.status.score is not None
    assert run.status.score.score == 100.0


def test_a_failed_critical_metric_fails_the_run_at_once_whatever_its_failure_limit() -> None:
    run = run_of(
        judged(
            "errors",
            judge={"direction": "increase", "critical": True},
            interval="1m",
            count=10,
            failureLimit=5,
        ),
        judged("latency", judge={"direction": "increase"}, interval="1m", count=10),
    )
    run = apply(
        run,
        [
            samples("errors", noisy(0.01), noisy(0.05, seed=3), T0),
            samples("latency", noisy(1.0), noisy(1.0, seed=4), T0),
        ],
        T0,
    )
    # Within its own limit (closed with what it had when the run ended)...
    assert run.status.metric_results[0].phase == "Inconclusive"
    assert run.status.metric_results[0].message.startswith("run ended")
    assert run.status.phase == "Failed"  # ...but critical for the score
    assert "critical" in run.status.message


def test_a_marginal_score_leaves_the_run_inconclusive() -> None:
    run = run_of(
        judged("a", judge={"direction": "increase"}, failureLimit=3),
        judged("b", judge={"direction": "increase"}),
        scoring={"thresholds": {"pass": 75, "marginal": 50}},
    )
    run = apply(
        run,
        [
            samples("a", noisy(1.0), noisy(3.0, seed=5), T0),
            samples("b", noisy(1.0), noisy(1.0, seed=6), T0),
        ],
        T0,
    )
    assert run.status.score is not None
    assert run.status.score.classification == "marginal"
    assert run.status.phase == "Inconclusive"


def test_a_judged_metric_with_no_data_is_never_successful() -> None:
    run = run_of(judged("p99", judge={"mustHaveData": False}, inconclusiveLimit=1))
    run = apply(run, [samples("p99", [], [], T0)], T0)
    assert run.status.metric_results[0].measurements[-1].phase == "Inconclusive"
    assert run.status.phase == "Inconclusive"
    required = apply(run_of(judged("p99", judge={})), [samples("p99", [], [1.0], T0)], T0)
    assert required.status.metric_results[0].measurements[-1].phase == "Failed"
    assert required.status.phase == "Failed"


def test_a_judged_measurement_that_lost_a_group_is_an_error() -> None:
    run = run_of(judged("p99", judge={}))
    broken = MeasurementResult(
        metric="p99", phase=None, started_at=T0, finished_at=T0, samples={"canary": [1.0]}
    )
    run = apply(run, [broken], T0)
    assert run.status.metric_results[0].measurements[-1].phase == "Error"


def test_a_judgement_keeps_the_latest_finite_points_with_their_times_for_the_report() -> None:
    run = run_of(judged("p99", judge={"direction": "increase"}))
    n = MAX_SERIES_POINTS + 30
    base = noisy(0.1, n=n)
    base[-1] = math.nan  # non-finite points are counted by the judge, never plotted
    canary = noisy(0.1, n=n, seed=2)
    stamps = [1.7e9 + i for i in range(n)]
    measured = MeasurementResult(
        metric="p99",
        phase=None,
        started_at=T0,
        finished_at=T0,
        samples={"baseline": base, "canary": canary},
        timestamps={"baseline": stamps, "canary": stamps},
    )
    judgement = apply(run, [measured], T0).status.metric_results[0].judgement
    assert judgement is not None
    assert judgement.baseline.nan_removed == 1
    series = judgement.baseline_series
    assert series is not None
    assert series.values == base[-MAX_SERIES_POINTS - 1 : -1]
    assert series.timestamps == stamps[-MAX_SERIES_POINTS - 1 : -1]
    assert series.truncated == n - 1 - MAX_SERIES_POINTS
    assert judgement.canary_series is not None
    assert judgement.canary_series.values == canary[-MAX_SERIES_POINTS:]
    # Without times (a provider that has none) there is nothing to plot, and nothing is made up.
    bare = apply(run, [samples("p99", base, canary, T0)], T0).status.metric_results[0]
    assert bare.judgement is not None
    assert bare.judgement.baseline_series is None
