"""The judge's scorer: many metric classifications become one 0..100 score, as Kayenta's.

1. Outcome per metric: Pass passes; High and Low fail; NoData fails when the metric has
   `mustHaveData` (the default: a canary that stops reporting is not a healthy canary) and is
   left out otherwise.
2. Per group: score = 100 x passed / (passed + failed). A group where nothing was judged has no
   score and is left out of step 3, so its weight goes to the groups that were judged instead of
   dragging the run towards 0 (or towards 100).
3. Run score: groups weighted by `scoring.groups[].weight`, normalised over the groups that have
   a score. A group that metrics name but `scoring.groups` does not list weighs 1 -- as much as
   a listed group of weight 1, so with weights like 60/40 an unlisted group barely counts: list
   every group you care about.
4. A failed `critical` metric forces the score to 0 and the run to `fail`, whatever the
   thresholds say.
5. Classification: `pass` at or above thresholds.pass, `marginal` at or above thresholds.marginal,
   `fail` below. With no judged metric at all the score is absent and the run is `nodata`, never
   a pass: an analysis that saw nothing has shown nothing.

The score is rounded to 6 decimals before it is compared with the thresholds, so that 3 of 4
metrics in one group is 75 and passes a threshold of 75 whatever the floating-point sum says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from herdsman.api.judge import (
    GroupScore,
    JudgeSpec,
    MetricJudgement,
    ScoreClassification,
    ScoreResult,
    ScoringSpec,
)

UNLISTED_WEIGHT = 1.0

Outcome = Literal["passed", "failed", "excluded"]


@dataclass
class _Group:
    name: str
    weight: float
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        judged = len(self.passed) + len(self.failed)
        return 100.0 * len(self.passed) / judged if judged else None


def score(
    judgements: Sequence[tuple[MetricJudgement, JudgeSpec]], scoring: ScoringSpec
) -> ScoreResult:
    """Score a run from its metric judgements, each with the JudgeSpec it was judged by."""
    thresholds = scoring.thresholds
    groups = {g.name: _Group(g.name, g.weight) for g in scoring.groups}
    critical_failed: list[str] = []
    critical_detail: list[str] = []

    for judgement, spec in judgements:
        group = groups.setdefault(spec.group, _Group(spec.group, UNLISTED_WEIGHT))
        outcome = _outcome(judgement, spec)
        {"passed": group.passed, "failed": group.failed, "excluded": group.excluded}[
            outcome
        ].append(judgement.name)
        if outcome == "failed" and spec.critical:
            critical_failed.append(judgement.name)
            critical_detail.append(f"{judgement.name} ({judgement.classification})")

    judged = [g for g in groups.values() if g.score is not None]
    total_weight = sum(g.weight for g in judged)
    results = [
        GroupScore(
            name=g.name,
            weight=g.weight,
            share=100.0 * g.weight / total_weight if g.score is not None else None,
            score=g.score,
            passed=g.passed,
            failed=g.failed,
            excluded=g.excluded,
        )
        for g in groups.values()
    ]
    passed = sum(len(g.passed) for g in judged)
    failed = sum(len(g.failed) for g in judged)
    tally = f"{passed} of {passed + failed} judged metric(s) passed"

    value: float | None
    classification: ScoreClassification
    if critical_failed:
        value, classification = 0.0, "fail"
        reason = f"critical metric(s) failed: {', '.join(critical_detail)}; {tally}"
    elif not judged:
        value, classification = None, "nodata"
        excluded = sum(len(g.excluded) for g in groups.values())
        reason = (
            f"no metric could be judged ({excluded} without data and without mustHaveData)"
            if excluded
            else "no judged metrics"
        )
    else:
        weighted = sum(g.weight * (g.score or 0.0) for g in judged) / total_weight
        value = min(100.0, max(0.0, round(weighted, 6)))
        if value >= thresholds.pass_:
            classification = "pass"
            reason = f"score {value:.4g} >= pass threshold {thresholds.pass_:g}; {tally}"
        elif value >= thresholds.marginal:
            classification = "marginal"
            reason = (
                f"score {value:.4g} below pass threshold {thresholds.pass_:g}, "
                f">= marginal threshold {thresholds.marginal:g}; {tally}"
            )
        else:
            classification = "fail"
            reason = f"score {value:.4g} < marginal threshold {thresholds.marginal:g}; {tally}"

    return ScoreResult(
        score=value,
        classification=classification,
        reason=reason,
        pass_threshold=thresholds.pass_,
        marginal_threshold=thresholds.marginal,
        critical_failure=bool(critical_failed),
        critical_failed=critical_failed,
        groups=results,
    )


def _outcome(judgement: MetricJudgement, spec: JudgeSpec) -> Outcome:
    """Which list of its group a metric lands in: passed, failed or excluded (step 1)."""
    if judgement.classification == "Pass":
        return "passed"
    if judgement.classification == "NoData" and not spec.must_have_data:
        return "excluded"
    return "failed"
