"""The built-in canary-vs-baseline judge: what users write in templates, and what it reports.

A metric with a `judge` is queried for the baseline and the canary server groups over the same
window; the judge (herdsman.analysis.judge) compares the two samples and the run is scored.

Configuration: `JudgeSpec` (per metric) and `ScoringSpec` (per template).
Results, carried in AnalysisRun status: `MetricJudgement` (per metric, every intermediate number
of the comparison) and `ScoreResult` (the 0..100 score and how it was reached). Result floats are
always finite; a number that does not exist (the ratio to a baseline median of 0, the p-value of a
sample too small to test) is absent (None), never NaN or infinity, which JSON cannot carry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from herdsman.api.base import ApiModel, ShortName, cel, validations

Direction = Literal["increase", "decrease", "either"]

# Per-metric outcome. Pass: no change that counts, or one in the allowed direction. High / Low:
# the canary is significantly and materially higher / lower, and that direction is a regression.
# NoData: too few points to judge (herdsman.analysis.judge.classifier documents the exact rule).
Classification = Literal["Pass", "High", "Low", "NoData"]

# Run outcome: pass / marginal / fail by the thresholds; nodata when no metric could be judged.
ScoreClassification = Literal["pass", "marginal", "fail", "nodata"]


class JudgeSpec(ApiModel):
    """How one metric's canary sample is compared with its baseline sample."""

    compare: Literal["baseline"] = Field(
        "baseline", description="What the canary is compared with."
    )
    direction: Direction = Field(
        "either", description="Which change is a regression: a higher value, a lower one, or both."
    )
    allowed_increase: float = Field(
        1.0,
        ge=1.0,
        description="Canary/baseline ratio tolerated before an increase counts (1.1 = +10%).",
    )
    allowed_decrease: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Canary/baseline ratio tolerated before a decrease counts (0.9 = -10%).",
    )
    critical: bool = Field(False, description="A failure of this metric forces the score to 0.")
    must_have_data: bool = Field(
        True,
        description="No data for either group fails the metric rather than leaving it out of "
        "the score.",
    )
    nan_strategy: Literal["remove", "replace"] = Field(
        "remove",
        description="Drop NaN points, or replace them with zero (for counters that were absent).",
    )
    outliers: Literal["keep", "remove"] = Field(
        "keep", description="remove: drop points outside 1.5 IQR."
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Confidence level of the Mann-Whitney test."
    )
    effect_size: float = Field(
        0.0,
        ge=0.0,
        description="Minimum relative change (of medians) that may count, on top of the ratios.",
    )
    group: ShortName = Field("default", description="Scoring group this metric counts towards.")


class ScoreGroup(ApiModel):
    name: ShortName
    weight: float = Field(
        ..., gt=0.0, description="Relative weight; weights are normalised to sum to 100."
    )


class ScoreThresholds(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.marginal) || !has(self.pass) || self.marginal <= self.pass",
                "thresholds: marginal must not be above pass",
            )
        )
    )

    pass_: float = Field(
        75.0, ge=0.0, le=100.0, alias="pass", description="Score at or above which the run passes."
    )
    marginal: float = Field(
        50.0, ge=0.0, le=100.0, description="Below this the run fails; between: inconclusive."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ScoreThresholds:
        if self.marginal > self.pass_:
            raise ValueError(
                f"thresholds: marginal ({self.marginal}) must not be above pass ({self.pass_})"
            )
        return self


class ScoringSpec(ApiModel):
    """How per-metric classifications become one 0..100 score."""

    groups: list[ScoreGroup] = Field(
        default_factory=list,
        max_length=32,
        # The API server then refuses two groups of one name, whose weights would be ambiguous.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    thresholds: ScoreThresholds = Field(default_factory=ScoreThresholds)
    lookback: str = Field(
        "",
        max_length=32,
        description="Window each judged query covers (e.g. 10m); default: since the run started.",
    )
    step: str = Field("15s", max_length=32, description="Resolution of the judged range queries.")

    @model_validator(mode="after")
    def _unique_groups(self) -> ScoringSpec:
        names = [g.name for g in self.groups]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"scoring groups named more than once: {', '.join(repeated)}")
        return self


# --- results (AnalysisRun status) ----------------------------------------------------------------

MAX_SERIES_POINTS = 120
"""Points kept per group and judged metric for the report's plots: the judge compares them all,
the status keeps the latest, so a run's object stays small whatever its lookback."""


class SampleSeries(ApiModel):
    """The finite points one group's query returned, in time order: what the report plots.

    Non-finite points (NaN, +-Inf) are left out; `SampleSummary` counts them.
    """

    timestamps: list[float] = Field(
        default_factory=list, max_length=MAX_SERIES_POINTS, description="Unix seconds."
    )
    values: list[float] = Field(default_factory=list, max_length=MAX_SERIES_POINTS)
    truncated: int = Field(0, ge=0, description="Earlier points left out to stay small.")

    @classmethod
    def of(cls, timestamps: Sequence[float], values: Sequence[float]) -> SampleSeries:
        points = [
            (float(t), float(v))
            for t, v in zip(timestamps, values, strict=False)
            if math.isfinite(t) and math.isfinite(v)
        ]
        kept = points[-MAX_SERIES_POINTS:]
        return cls(
            timestamps=[t for t, _ in kept],
            values=[v for _, v in kept],
            truncated=len(points) - len(kept),
        )


class SampleSummary(ApiModel):
    """One group's sample: what arrived, what preprocessing removed, what was compared."""

    input_count: int = Field(..., ge=0, description="Points the query returned.")
    nan_removed: int = Field(
        0, ge=0, description="Non-finite points (NaN, +-Inf) dropped (nanStrategy: remove)."
    )
    nan_replaced: int = Field(
        0, ge=0, description="Non-finite points replaced with 0 (nanStrategy: replace)."
    )
    outliers_removed: int = Field(0, ge=0, description="Points outside the 1.5 IQR fences.")
    count: int = Field(..., ge=0, description="Points compared, after preprocessing.")
    median: float | None = Field(None, description="Median of the compared points.")


class MetricJudgement(ApiModel):
    """The judge's verdict on one metric, with every number that led to it.

    `shift` is the Hodges-Lehmann estimate of canary minus baseline (the median of all pairwise
    differences) and `shiftLower`/`shiftUpper` its distribution-free confidence interval.
    `ratio` is that shift relative to the baseline median (1 + shift / |baseline median|): the
    number `allowedIncrease` and `allowedDecrease` are compared with. `effectSize` is the relative
    change of the medians, compared with the configured `effectSize`.
    """

    name: str = Field(..., description="The metric.")
    group: str = Field("default", description="Scoring group the metric counts towards.")
    critical: bool = Field(False, description="A failure forces the score to 0.")
    direction: Direction = Field("either", description="Which change is a regression.")
    classification: Classification = Field(
        ..., description="Pass, High (regressed upwards), Low (regressed downwards) or NoData."
    )
    reason: str = Field(..., description="Why, in words.")
    baseline: SampleSummary
    canary: SampleSummary
    confidence: float = Field(..., description="Confidence level the test was run at.")
    test_method: Literal["exact", "asymptotic", "none"] = Field(
        "none", description="How the p-value was computed; none when no test ran."
    )
    statistic: float | None = Field(
        None,
        description="Mann-Whitney U of the canary: pairs where its point is higher, ties half.",
    )
    p_value: float | None = Field(None, description="Two-sided p-value of the Mann-Whitney test.")
    significant: bool = Field(False, description="pValue < 1 - confidence.")
    shift: float | None = Field(None, description="Hodges-Lehmann estimate of canary - baseline.")
    shift_lower: float | None = Field(None, description="Lower confidence bound of the shift.")
    shift_upper: float | None = Field(None, description="Upper confidence bound of the shift.")
    ratio: float | None = Field(
        None,
        description="1 + shift / |baseline median|; absent when that median is 0 (and shift is not).",
    )
    ratio_lower: float | None = Field(None, description="Lower confidence bound of the ratio.")
    ratio_upper: float | None = Field(None, description="Upper confidence bound of the ratio.")
    effect_size: float | None = Field(
        None,
        description="(canary median - baseline median) / |baseline median|; absent when the "
        "baseline median is 0 and the canary's is not.",
    )
    baseline_series: SampleSeries | None = Field(
        None, description="The baseline's points with their times (the latest, for plots)."
    )
    canary_series: SampleSeries | None = Field(
        None, description="The canary's points with their times (the latest, for plots)."
    )


class GroupScore(ApiModel):
    """One scoring group: its share of passing metrics, and which metrics made it."""

    name: str
    weight: float = Field(..., description="Configured weight (1 for groups not configured).")
    share: float | None = Field(
        None, description="Percentage of the run score this group carries; absent without data."
    )
    score: float | None = Field(
        None, description="100 x passed / judged; absent when no metric of the group was judged."
    )
    passed: list[str] = Field(default_factory=list, description="Metrics that passed.")
    failed: list[str] = Field(
        default_factory=list,
        description="Metrics that failed (High, Low, or NoData when required).",
    )
    excluded: list[str] = Field(
        default_factory=list, description="Metrics left out: NoData without mustHaveData."
    )


class ScoreResult(ApiModel):
    """The run's score: 0..100 from the weighted groups, or 0 when a critical metric failed."""

    score: float | None = Field(
        None, ge=0.0, le=100.0, description="0..100; absent when no metric could be judged."
    )
    classification: ScoreClassification
    reason: str = Field(..., description="Why, in words.")
    pass_threshold: float = Field(..., description="Score at or above which the run passes.")
    marginal_threshold: float = Field(..., description="Score below which the run fails.")
    critical_failure: bool = Field(False, description="A failed critical metric forced 0.")
    critical_failed: list[str] = Field(
        default_factory=list, description="The critical metrics that failed."
    )
    groups: list[GroupScore] = Field(default_factory=list)
