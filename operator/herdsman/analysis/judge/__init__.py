"""The built-in canary-vs-baseline judge: Kayenta's method, natively, as a pure library.

    preprocess(values, spec)                    -> Preprocessed      NaN + IQR handling, counted
    classify(name, baseline, canary, spec)      -> MetricJudgement   Mann-Whitney U + HL shift
    score([(judgement, spec), ...], scoring)    -> ScoreResult       weighted groups, 0..100

No I/O and no clock: the analysis controller queries the metric for both groups, calls these,
and writes the results (pydantic models from herdsman.api.judge) into AnalysisRun status.
"""

from herdsman.analysis.judge.classifier import MIN_POINTS, classify, classify_preprocessed
from herdsman.analysis.judge.preprocessing import Preprocessed, preprocess
from herdsman.analysis.judge.scorer import score
from herdsman.api.judge import (
    Classification,
    GroupScore,
    JudgeSpec,
    MetricJudgement,
    SampleSummary,
    ScoreClassification,
    ScoreResult,
    ScoringSpec,
)

__all__ = [
    "MIN_POINTS",
    "Classification",
    "GroupScore",
    "JudgeSpec",
    "MetricJudgement",
    "Preprocessed",
    "SampleSummary",
    "ScoreClassification",
    "ScoreResult",
    "ScoringSpec",
    "classify",
    "classify_preprocessed",
    "preprocess",
    "score",
]
