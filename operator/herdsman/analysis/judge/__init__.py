"""The built-in canary-vs-baseline judge: Kayenta's method, natively, as a pure library.

    preprocess(values, spec)                    -> Preprocessed      NaN + IQR handling, counted
    classify(name, baseline, canary, spec)      -> MetricJudgement   Mann-Whitney U + HL shift
    score([(judgement, spec), ...], scoring)    -> ScoreResult       weighted groups, 0..100

No I/O and no clock: the analysis controller queries the metric for both groups, calls these,
and writes the results (pydantic models from herdsman.api.judge) into AnalysisRun status.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

# NumPy and SciPy (the classifier and the preprocessing) load on first use, not with the package:
# importing scipy.stats costs the operator about 80 MB of RSS, and an operator whose rollouts
# never run a judged measurement never needs them (PEP 562 module __getattr__).
_LAZY = {
    "MIN_POINTS": "herdsman.analysis.judge.classifier",
    "classify": "herdsman.analysis.judge.classifier",
    "classify_preprocessed": "herdsman.analysis.judge.classifier",
    "Preprocessed": "herdsman.analysis.judge.preprocessing",
    "preprocess": "herdsman.analysis.judge.preprocessing",
}

if TYPE_CHECKING:
    from herdsman.analysis.judge.classifier import MIN_POINTS, classify, classify_preprocessed
    from herdsman.analysis.judge.preprocessing import Preprocessed, preprocess


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
