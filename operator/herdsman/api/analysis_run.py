"""AnalysisRun: the metrics a run copied from its templates, its arguments, and what it measured."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from herdsman.api.analysis import (
    MAX_METRICS,
    MEASUREMENT_HISTORY,
    TERMINAL_PHASES,
    AnalysisPhase,
    Argument,
    MeasurementPhase,
    Metric,
    unique_names,
)
from herdsman.api.analysis_ref import (
    DryRunMetric,
    MeasurementRetention,
)
from herdsman.api.base import (
    API_VERSION,
    MAX_LIST,
    ApiModel,
    Name,
    ObjectMeta,
    ShortName,
    cel,
    validations,
)
from herdsman.api.judge import MetricJudgement, ScoreResult, ScoringSpec


class AnalysisRunContext(ApiModel):
    """Who the run measures; the source of the {{rollout.*}} placeholders."""

    rollout: Name
    namespace: Name
    revision: int = Field(..., ge=0)
    canary_group: Name | None = Field(None, description="Server group under test.")
    baseline_group: Name | None = Field(
        None, description="Fresh copy of stable, sized like the canary."
    )
    stable_group: Name | None = None


class AnalysisRunSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            unique_names("metrics", "name", "metric"),
            unique_names("args", "name", "argument"),
            cel(
                "!has(self.args) || self.args.all(a, has(a.value) || has(a.valueFrom))",
                "every argument of a run needs a value or a valueFrom",
                ".args",
            ),
        )
    )

    metrics: list[Metric] = Field(..., min_length=1, max_length=MAX_METRICS)
    args: list[Argument] = Field(default_factory=list, max_length=MAX_LIST)
    dry_run: list[DryRunMetric] = Field(default_factory=list, max_length=MAX_LIST)
    measurement_retention: list[MeasurementRetention] = Field(
        default_factory=list, max_length=MAX_LIST
    )
    scoring: ScoringSpec | None = None
    terminate: bool = Field(
        False, description="Stop measuring; the run completes with what it has."
    )
    context: AnalysisRunContext


class Measurement(ApiModel):
    phase: MeasurementPhase
    value: str = Field("", max_length=1024, description="The measured value as text (truncated).")
    message: str = Field("", max_length=1024)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class InProgress(ApiModel):
    """A measurement that was started and has no verdict yet (a Job that runs)."""

    name: str = Field(..., max_length=253, description="What runs, e.g. the Job's name.")
    started_at: datetime
    checked_at: datetime


class MetricResult(ApiModel):
    name: ShortName
    phase: AnalysisPhase = "Pending"
    message: str = Field("", max_length=1024)
    dry_run: bool = False
    count: int = Field(
        0, description="Measurements that reached a verdict; errors are counted apart."
    )
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_successful: int = Field(
        0, description="Successful measurements in a row (for consecutiveSuccessLimit)."
    )
    measurements: list[Measurement] = Field(
        default_factory=list,
        description=f"The latest measurements (default {MEASUREMENT_HISTORY}, see "
        "measurementRetention), oldest first.",
    )
    in_progress: InProgress | None = Field(
        None, description="The measurement being taken, when it takes longer than one look."
    )
    judgement: MetricJudgement | None = Field(
        None, description="The judge's latest verdict (judged metrics)."
    )


class RunSummary(ApiModel):
    """Metrics by phase (dry-run metrics apart)."""

    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    running: int = 0


class AnalysisRunStatus(ApiModel):
    phase: AnalysisPhase = "Pending"
    message: str = Field("", max_length=4096)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    metric_results: list[MetricResult] = Field(default_factory=list)
    run_summary: RunSummary = Field(default_factory=RunSummary)
    dry_run_summary: RunSummary = Field(default_factory=RunSummary)
    summary: str = Field("", description="Metric phases in one line (printer column).")
    score: ScoreResult | None = Field(
        None, description="The judge's score of the latest judgements."
    )

    def result(self, name: str) -> MetricResult | None:
        return next((r for r in self.metric_results if r.name == name), None)


class AnalysisRun(ApiModel):
    """A run of merged analysis templates for one rollout revision."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = API_VERSION
    kind: Literal["AnalysisRun"] = "AnalysisRun"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AnalysisRunSpec
    status: AnalysisRunStatus = Field(default_factory=AnalysisRunStatus)

    @classmethod
    def from_body(cls, body: Any) -> AnalysisRun:
        return cls.model_validate(dict(body))

    @property
    def completed(self) -> bool:
        return self.status.phase in TERMINAL_PHASES
