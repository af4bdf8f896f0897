"""AnalysisRuns as pure functions: say what is due, record what was measured (building one is
run_build.py's).

No I/O here: the reconcile loop lists its runs, asks `due(run, now)`, has
herdsman.analysis.measure take those measurements, and writes `record(run, results, now)` as
the run's new status, all in one pass. `next_due_at` says when to come back.

The rules, following Argo Rollouts where it has one:

- A metric is measured at `startedAt + initialDelay`, then every `interval`. `count`
  measurements that reached a verdict complete it; without `count` a metric with no interval is
  measured once and one with an interval until the run is terminated. Like Argo, an Error does
  not use up the count: the measurement is retried after min(interval, ERROR_RETRY) seconds,
  and more than `consecutiveErrorLimit` errors in a row make the metric Error.
- A metric fails as soon as more than `failureLimit` measurements failed and is Inconclusive
  as soon as more than `inconclusiveLimit` were: the run does not wait for `count` to fail.
- A completed metric is Successful only if at least one measurement was: a metric that never
  saw data (all Inconclusive within its limit, or errors) is Inconclusive, never Successful.
- The run is Failed as soon as one deciding metric is Failed, Error as soon as one is Error;
  otherwise, once every deciding metric is complete, Inconclusive if one is, else Successful.
  Dry-run metrics are measured and reported but never decide.
- A run whose every metric is dry-run cannot pass: it completes Inconclusive, so the rollout
  pauses for a person instead of promoting on no evidence. A run without metrics is an Error.
- Judged metrics: each measurement is the judge's classification of the baseline and canary
  samples (Pass is Successful; High or Low is Failed; NoData is Failed when the judge's
  mustHaveData, else Inconclusive), counted against the limits like any measurement. The run's
  score (herdsman.analysis.judge.score over the latest judgements) is recorded after every
  pass; a failed critical metric fails the run at once, and when the run completes a score
  classified fail makes it Failed and a marginal one (or no data) Inconclusive.
- `spec.terminate` completes the run with what it has: running metrics are closed by the
  same rules as a completed count (Successful only with a successful measurement).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from herdsman.analysis import judge
from herdsman.analysis.judge import score
from herdsman.api.analysis import (
    MEASUREMENT_HISTORY,
    TERMINAL_PHASES,
    AnalysisPhase,
    MeasurementPhase,
    Metric,
)
from herdsman.api.analysis_run import (
    AnalysisRun,
    AnalysisRunStatus,
    InProgress,
    Measurement,
    MetricResult,
    RunSummary,
)
from herdsman.api.base import duration_seconds
from herdsman.api.judge import (
    JudgeSpec,
    MetricJudgement,
    SampleSeries,
    ScoreResult,
    ScoringSpec,
)
from herdsman.api.placeholders import int_value

ERROR_RETRY = timedelta(seconds=10)
"""Wait before measuring again after an Error (shorter if the metric's interval is)."""
IN_PROGRESS_POLL = timedelta(seconds=2)
"""How often a measurement in progress (a Job) is looked at again."""

Group = Literal["baseline", "canary"]
JUDGED_GROUPS: tuple[Group, ...] = ("baseline", "canary")


def retention_limit(run: AnalysisRun, metric: str) -> int:
    """Measurements of `metric` the status keeps: its measurementRetention, else the default."""
    chosen = {r.metric_name: r.limit for r in run.spec.measurement_retention}
    return chosen.get(metric, chosen.get("*", MEASUREMENT_HISTORY))


# --- scheduling -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """One measurement to take now. Judged metrics name the server groups to sample."""

    metric: str
    groups: tuple[Group, ...] = ()


def run_start(run: AnalysisRun, now: datetime) -> datetime:
    """When the run started: its recorded start, else its creation, else now."""
    return run.status.started_at or run.metadata.creation_timestamp or now


def is_dry_run(run: AnalysisRun, metric: Metric) -> bool:
    return metric.dry_run or any(d.metric_name in ("*", metric.name) for d in run.spec.dry_run)


def effective_count(metric: Metric) -> int | None:
    """Verdicts that complete the metric; None: until the run is terminated."""
    count = int_value(metric.count)
    if count is not None:
        return count
    return 1 if metric.interval is None else None


def _seconds(value: int | str | None) -> timedelta:
    return timedelta(seconds=duration_seconds(value) or 0.0)


def next_measurement_at(
    metric: Metric, result: MetricResult | None, start: datetime
) -> datetime | None:
    """When `metric` should next be measured; None when it needs no more measurements."""
    if result is not None and result.phase in TERMINAL_PHASES:
        return None
    if result is not None and result.in_progress is not None:
        return result.in_progress.checked_at + IN_PROGRESS_POLL
    if result is None or not result.measurements:
        return start + _seconds(metric.initial_delay)
    limit = effective_count(metric)
    if limit is not None and result.count >= limit:
        return None
    last = result.measurements[-1]
    finished = last.finished_at or last.started_at or start
    interval = _seconds(metric.interval)
    if last.phase == "Error":
        return finished + (
            min(interval, ERROR_RETRY) if metric.interval is not None else ERROR_RETRY
        )
    return finished + interval


def due(run: AnalysisRun, now: datetime) -> list[Due]:
    """The measurements to take now. A completed or terminated run has none."""
    if run.completed or run.spec.terminate:
        return []
    start = run_start(run, now)
    found: list[Due] = []
    for metric in run.spec.metrics:
        at = next_measurement_at(metric, run.status.result(metric.name), start)
        if at is not None and at <= now:
            found.append(Due(metric.name, JUDGED_GROUPS if metric.judge is not None else ()))
    return found


def next_due_at(run: AnalysisRun, now: datetime) -> datetime | None:
    """The earliest moment a measurement is due (now or earlier if one is due already);
    None when the run needs no more measurements."""
    if run.completed:
        return None
    if run.spec.terminate:
        return now  # the next record() completes it
    start = run_start(run, now)
    moments = [
        at
        for metric in run.spec.metrics
        if (at := next_measurement_at(metric, run.status.result(metric.name), start)) is not None
    ]
    return min(moments, default=None)


# --- recording ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasurementResult:
    """One measurement, as herdsman.analysis.measure reports it.

    For a judged metric `phase` is None and `samples` holds each group's values (`timestamps`
    their times, when the provider has them): the judge decides the phase in `record`.
    Otherwise `phase` is the conditions' verdict.
    """

    metric: str
    phase: MeasurementPhase | None
    started_at: datetime
    finished_at: datetime
    value: str = ""
    message: str = ""
    samples: Mapping[str, Sequence[float]] | None = field(default=None)
    timestamps: Mapping[str, Sequence[float]] | None = field(default=None)
    in_progress: str | None = None
    """Set (to what runs, e.g. a Job's name) when the measurement has started and has no
    verdict yet: `record` notes it and the metric is looked at again after IN_PROGRESS_POLL."""


def record(
    run: AnalysisRun, results: Sequence[MeasurementResult], now: datetime
) -> AnalysisRunStatus:
    """The run's status after `results`; pure (the run itself is not changed).

    Results for unknown metrics, or for metrics already complete, are ignored. Calling it with
    no results still applies `terminate` and completes a run that has nothing left to do.
    """
    status = run.status.model_copy(deep=True)
    if run.completed:
        return status
    status.started_at = run_start(run, now)
    metrics = {metric.name: metric for metric in run.spec.metrics}
    by_name = {result.name: result for result in status.metric_results}
    status.metric_results = [
        by_name.get(name) or MetricResult(name=name, dry_run=is_dry_run(run, metric))
        for name, metric in metrics.items()
    ]
    by_name = {result.name: result for result in status.metric_results}

    for measured in results:
        metric = metrics.get(measured.metric)
        result = by_name.get(measured.metric)
        if metric is None or result is None or result.phase in TERMINAL_PHASES:
            continue
        if measured.in_progress is not None:
            since = result.in_progress.started_at if result.in_progress else measured.started_at
            result.in_progress = InProgress(
                name=measured.in_progress, started_at=since, checked_at=measured.finished_at
            )
            if result.phase == "Pending":
                result.phase = "Running"
            continue
        if result.in_progress is not None:
            measured = replace(measured, started_at=result.in_progress.started_at)
            result.in_progress = None
        _add_measurement(metric, result, measured, retention_limit(run, metric.name))
        result.phase, result.message = _metric_phase(metric, result, closing=False)

    if run.spec.terminate:
        for name, result in by_name.items():
            if result.phase not in TERMINAL_PHASES:
                phase, message = _metric_phase(metrics[name], result, closing=True)
                result.phase, result.message = (
                    phase,
                    f"terminated: {message}" if message else "terminated",
                )

    status.score = _score(run, status)
    status.run_summary, status.dry_run_summary = _summaries(status.metric_results)
    status.summary = _summary_text(status.metric_results)
    phase, message = _run_phase(run, status)
    if phase in TERMINAL_PHASES:
        # A run that ended early (fail fast) closes the metrics still measuring: a finished
        # run with a "Running" metric would read as unfinished everywhere it is summarised.
        for name, result in by_name.items():
            if result.phase not in TERMINAL_PHASES:
                closed, why = _metric_phase(metrics[name], result, closing=True)
                result.phase, result.message = closed, f"run ended: {why}" if why else "run ended"
        status.run_summary, status.dry_run_summary = _summaries(status.metric_results)
        status.summary = _summary_text(status.metric_results)
    status.phase, status.message = phase, message
    if phase in TERMINAL_PHASES and status.completed_at is None:
        # Not before the measurement that ended it (measurements carry their own clock).
        last = max((r.finished_at for r in results), default=now)
        status.completed_at = max(now, last)
    return status


def _add_measurement(
    metric: Metric, result: MetricResult, measured: MeasurementResult, keep: int
) -> None:
    phase: MeasurementPhase
    value, message = measured.value, measured.message
    if measured.phase is None:
        phase, value, message, result.judgement = _judge(metric, measured)
    else:
        phase = measured.phase
    entry = Measurement(
        phase=phase,
        value=_clip(value),
        message=_clip(message),
        started_at=measured.started_at,
        finished_at=measured.finished_at,
    )
    result.measurements = [*result.measurements, entry][-keep:]
    if phase == "Error":
        result.error += 1
        result.consecutive_error += 1
        return
    result.consecutive_error = 0
    result.count += 1
    result.consecutive_successful = (
        result.consecutive_successful + 1 if phase == "Successful" else 0
    )
    if phase == "Successful":
        result.successful += 1
    elif phase == "Failed":
        result.failed += 1
    else:
        result.inconclusive += 1


def _judge(
    metric: Metric, measured: MeasurementResult
) -> tuple[MeasurementPhase, str, str, MetricJudgement | None]:
    """Phase, value text, message and judgement of a judged measurement."""
    spec = metric.judge or JudgeSpec()
    samples = measured.samples or {}
    if "baseline" not in samples or "canary" not in samples:
        return "Error", "", "judged measurement without baseline and canary samples", None
    try:
        judgement = judge.classify(
            metric.name, list(samples["baseline"]), list(samples["canary"]), spec
        )
    except Exception as exc:  # the judge is pure; a crash in it is this measurement's error
        return "Error", "", f"judge failed: {exc}", None
    times = measured.timestamps or {}
    if "baseline" in times and "canary" in times:
        # The points themselves, for the report's plots; the judgement's numbers come from them.
        judgement.baseline_series = SampleSeries.of(times["baseline"], samples["baseline"])
        judgement.canary_series = SampleSeries.of(times["canary"], samples["canary"])
    phase: MeasurementPhase
    if judgement.classification == "Pass":
        phase = "Successful"
    elif judgement.classification in ("High", "Low"):
        phase = "Failed"
    else:
        phase = "Failed" if spec.must_have_data else "Inconclusive"
    value = (
        f"baseline median {_num(judgement.baseline.median)} (n={judgement.baseline.count}), "
        f"canary median {_num(judgement.canary.median)} (n={judgement.canary.count}), "
        f"ratio {_num(judgement.ratio)}"
    )
    return phase, value, f"{judgement.classification}: {judgement.reason}", judgement


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _clip(text: str, limit: int = 1024) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _metric_phase(
    metric: Metric, result: MetricResult, *, closing: bool
) -> tuple[AnalysisPhase, str]:
    last = _last_message(result)
    failure_limit = int_value(metric.failure_limit) or 0
    error_limit = int_value(metric.consecutive_error_limit) or 0
    inconclusive_limit = int_value(metric.inconclusive_limit) or 0
    success_limit = int_value(metric.consecutive_success_limit) or 0
    # A negative limit (Argo's -1) is no limit.
    if failure_limit >= 0 and result.failed > failure_limit:
        return "Failed", _limit_text(result.failed, "failed", "failureLimit", failure_limit, last)
    if error_limit >= 0 and result.consecutive_error > error_limit:
        return "Error", _limit_text(
            result.consecutive_error,
            "errors in a row",
            "consecutiveErrorLimit",
            error_limit,
            last,
        )
    if inconclusive_limit >= 0 and result.inconclusive > inconclusive_limit:
        return "Inconclusive", _limit_text(
            result.inconclusive,
            "inconclusive",
            "inconclusiveLimit",
            inconclusive_limit,
            last,
        )
    if success_limit > 0 and result.consecutive_successful >= success_limit:
        return "Successful", f"{result.consecutive_successful} successful in a row"
    limit = effective_count(metric)
    if closing or (limit is not None and result.count >= limit):
        if success_limit > 0:
            return "Inconclusive", (
                f"consecutiveSuccessLimit {success_limit} not reached "
                f"({result.consecutive_successful} successful in a row)"
            )
        if result.successful == 0:
            return "Inconclusive", "no successful measurement"
        return "Successful", ""
    return ("Running" if result.count or result.error else "Pending"), ""


def _limit_text(count: int, what: str, limit_name: str, limit: int, last: str) -> str:
    text = f"{count} {what} (more than {limit_name} {limit})"
    return f"{text}; last: {last}" if last else text


def _last_message(result: MetricResult) -> str:
    return result.measurements[-1].message if result.measurements else ""


def _score(run: AnalysisRun, status: AnalysisRunStatus) -> ScoreResult | None:
    judged = [
        (result.judgement, metric.judge)
        for metric in run.spec.metrics
        if metric.judge is not None
        and not is_dry_run(run, metric)
        and (result := status.result(metric.name)) is not None
        and result.judgement is not None
    ]
    if not judged:
        return status.score
    return score(judged, run.spec.scoring or ScoringSpec())


def _run_phase(run: AnalysisRun, status: AnalysisRunStatus) -> tuple[AnalysisPhase, str]:
    if not run.spec.metrics:
        return "Error", "the run has no metrics to measure"
    deciding = [r for r in status.metric_results if not r.dry_run]
    for wanted in ("Failed", "Error"):
        for result in deciding:
            if result.phase == wanted:
                return wanted, f"metric {result.name}: {result.message or wanted.lower()}"
    score = status.score
    if score is not None and score.critical_failure:
        return (
            "Failed",
            f"critical metric failed: {', '.join(score.critical_failed)} ({score.reason})",
        )
    considered = deciding or status.metric_results
    if any(r.phase not in TERMINAL_PHASES for r in considered):
        return "Running", ""
    if not deciding:
        return "Inconclusive", "every metric is dry-run: the run measured but cannot pass"
    for result in deciding:
        if result.phase == "Inconclusive":
            return "Inconclusive", f"metric {result.name}: {result.message or 'inconclusive'}"
    if score is not None:
        if score.classification == "fail":
            return "Failed", f"score {_num(score.score)}: {score.reason}"
        if score.classification in ("marginal", "nodata"):
            return "Inconclusive", f"score {_num(score.score)}: {score.reason}"
    return "Successful", ""


def _summaries(results: Sequence[MetricResult]) -> tuple[RunSummary, RunSummary]:
    def summarise(chosen: Sequence[MetricResult]) -> RunSummary:
        return RunSummary(
            count=len(chosen),
            successful=sum(r.phase == "Successful" for r in chosen),
            failed=sum(r.phase == "Failed" for r in chosen),
            inconclusive=sum(r.phase == "Inconclusive" for r in chosen),
            error=sum(r.phase == "Error" for r in chosen),
            running=sum(r.phase in ("Pending", "Running") for r in chosen),
        )

    return (
        summarise([r for r in results if not r.dry_run]),
        summarise([r for r in results if r.dry_run]),
    )


def _summary_text(results: Sequence[MetricResult]) -> str:
    """e.g. `2/3 successful, 1 failed, 1 dry-run` for the printer column."""
    deciding = [r for r in results if not r.dry_run]
    parts = [f"{sum(r.phase == 'Successful' for r in deciding)}/{len(deciding)} successful"]
    for phase in ("Failed", "Error", "Inconclusive", "Running"):
        n = sum(r.phase == phase for r in deciding)
        if n:
            parts.append(f"{n} {phase.lower()}")
    dry = len(results) - len(deciding)
    if dry:
        parts.append(f"{dry} dry-run")
    return ", ".join(parts)
