"""Configuration of the built-in canary-vs-baseline judge, as users write it in templates.

A metric with a `judge` is queried for the baseline and the canary server groups over the same
window; the judge (herdsman.analysis.judge) compares the two samples and the run is scored.
Result models (what the judge reports into AnalysisRun status) live beside these.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from herdsman.api.base import ApiModel, ShortName


class JudgeSpec(ApiModel):
    """How one metric's canary sample is compared with its baseline sample."""

    compare: Literal["baseline"] = Field("baseline", description="What the canary is compared with.")
    direction: Literal["increase", "decrease", "either"] = Field(
        "either", description="Which change is a regression: a higher value, a lower one, or both."
    )
    allowed_increase: float = Field(
        1.0, ge=1.0, description="Canary/baseline ratio tolerated before an increase counts (1.1 = +10%)."
    )
    allowed_decrease: float = Field(
        1.0, gt=0.0, le=1.0, description="Canary/baseline ratio tolerated before a decrease counts (0.9 = -10%)."
    )
    critical: bool = Field(False, description="A failure of this metric forces the score to 0.")
    must_have_data: bool = Field(
        True, description="No data for either group fails the metric rather than leaving it inconclusive."
    )
    nan_strategy: Literal["remove", "replace"] = Field(
        "remove", description="Drop NaN points, or replace them with zero (for counters that were absent)."
    )
    outliers: Literal["keep", "remove"] = Field("keep", description="remove: drop points outside 1.5 IQR.")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence level of the Mann-Whitney test.")
    effect_size: float = Field(
        0.0, ge=0.0, description="Minimum relative change (of medians) that may count, on top of the ratios."
    )
    group: ShortName = Field("default", description="Scoring group this metric counts towards.")


class ScoreGroup(ApiModel):
    name: ShortName
    weight: float = Field(..., gt=0.0, description="Relative weight; weights are normalised to sum to 100.")


class ScoreThresholds(ApiModel):
    pass_: float = Field(75.0, ge=0.0, le=100.0, alias="pass", description="Score at or above which the run passes.")
    marginal: float = Field(50.0, ge=0.0, le=100.0, description="Below this the run fails; between: inconclusive.")


class ScoringSpec(ApiModel):
    """How per-metric classifications become one 0..100 score."""

    groups: list[ScoreGroup] = Field(default_factory=list, max_length=32)
    thresholds: ScoreThresholds = Field(default_factory=ScoreThresholds)
    lookback: str = Field(
        "", max_length=32, description="Window each judged query covers (e.g. 10m); default: since the run started."
    )
    step: str = Field("15s", max_length=32, description="Resolution of the judged range queries.")
