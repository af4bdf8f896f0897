"""Scoring: group shares, weights, critical failures, thresholds, and never a silent pass."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from herdsman.analysis.judge import (
    Classification,
    JudgeSpec,
    MetricJudgement,
    SampleSummary,
    ScoringSpec,
    score,
)

pytestmark = pytest.mark.unit

EMPTY = SampleSummary(input_count=0, count=0)


def judged(
    name: str, classification: Classification, **spec: Any
) -> tuple[MetricJudgement, JudgeSpec]:
    judge = JudgeSpec(**spec)
    judgement = MetricJudgement(
        name=name,
        group=judge.group,
        critical=judge.critical,
        classification=classification,
        reason="test",
        baseline=EMPTY,
        canary=EMPTY,
        confidence=judge.confidence,
    )
    return judgement, judge


def scoring(**spec: Any) -> ScoringSpec:
    return ScoringSpec.model_validate(spec)


def test_all_passing_metrics_score_100_and_pass() -> None:
    result = score([judged("a", "Pass"), judged("b", "Pass")], ScoringSpec())
    assert result.score == 100.0
    assert result.classification == "pass"
    assert result.groups[0].passed == ["a", "b"]
    assert result.groups[0].share == 100.0


def test_three_of_four_is_exactly_the_default_pass_threshold() -> None:
    metrics = [judged(n, "Pass") for n in "abc"] + [judged("d", "High")]
    result = score(metrics, ScoringSpec())
    assert result.score == 75.0
    assert result.classification == "pass"
    assert result.groups[0].failed == ["d"]


@pytest.mark.parametrize(
    ("passed", "expected"), [(4, "pass"), (3, "marginal"), (2, "marginal"), (1, "fail")]
)
def test_thresholds_classify_the_score(passed: int, expected: str) -> None:
    metrics = [judged(f"p{i}", "Pass") for i in range(passed)]
    metrics += [judged(f"f{i}", "Low") for i in range(5 - passed)]
    result = score(metrics, scoring(thresholds={"pass": 80, "marginal": 40}))
    assert result.score == 20.0 * passed
    assert result.classification == expected
    assert (result.pass_threshold, result.marginal_threshold) == (80.0, 40.0)


def test_groups_are_weighted_and_normalised() -> None:
    metrics = [
        judged("p50", "Pass", group="latency"),
        judged("p99", "High", group="latency"),
        judged("5xx", "Pass", group="errors"),
    ]
    result = score(
        metrics,
        scoring(groups=[{"name": "latency", "weight": 1}, {"name": "errors", "weight": 3}]),
    )
    # latency 50 x 1/4 + errors 100 x 3/4
    assert result.score == 87.5
    by_name = {g.name: g for g in result.groups}
    assert by_name["latency"].score == 50.0
    assert by_name["latency"].share == 25.0
    assert by_name["errors"].share == 75.0


def test_float_sums_landing_on_a_threshold_still_reach_it() -> None:
    # (100 x 1 + 62.5 x 2) / 3 is 75 on paper; float arithmetic must not make it 74.99...
    metrics = [judged("a", "Pass", group="a")]
    metrics += [judged(f"b{i}", "Pass", group="b") for i in range(5)]
    metrics += [judged(f"c{i}", "High", group="b") for i in range(3)]
    result = score(
        metrics, scoring(groups=[{"name": "a", "weight": 0.1}, {"name": "b", "weight": 0.2}])
    )
    assert result.score == 75.0
    assert result.classification == "pass"


def test_groups_not_listed_weigh_one() -> None:
    metrics = [judged("a", "Pass", group="listed"), judged("b", "High", group="unlisted")]
    result = score(metrics, scoring(groups=[{"name": "listed", "weight": 3}]))
    assert result.score == 75.0
    unlisted = next(g for g in result.groups if g.name == "unlisted")
    assert unlisted.weight == 1.0
    assert unlisted.share == 25.0


def test_no_data_fails_when_data_is_required() -> None:
    result = score([judged("a", "Pass"), judged("b", "NoData")], ScoringSpec())
    assert result.score == 50.0
    assert result.groups[0].failed == ["b"]


def test_no_data_is_left_out_when_data_is_optional() -> None:
    result = score(
        [judged("a", "Pass"), judged("b", "NoData", must_have_data=False)], ScoringSpec()
    )
    assert result.score == 100.0
    assert result.groups[0].excluded == ["b"]


def test_a_group_without_judged_metrics_gives_its_weight_to_the_others() -> None:
    metrics = [
        judged("a", "High", group="judged"),
        judged("b", "Pass", group="judged"),
        judged("c", "NoData", group="quiet", must_have_data=False),
    ]
    result = score(
        metrics,
        scoring(
            groups=[
                {"name": "judged", "weight": 1},
                {"name": "quiet", "weight": 9},
                {"name": "unused", "weight": 5},
            ]
        ),
    )
    assert result.score == 50.0
    by_name = {g.name: g for g in result.groups}
    assert by_name["quiet"].score is None
    assert by_name["quiet"].share is None
    assert by_name["unused"].score is None
    assert by_name["judged"].share == 100.0


def test_a_failed_critical_metric_forces_zero_and_fail() -> None:
    metrics = [judged(f"p{i}", "Pass") for i in range(9)] + [judged("oom", "High", critical=True)]
    result = score(metrics, ScoringSpec())
    assert result.score == 0.0
    assert result.classification == "fail"
    assert result.critical_failure
    assert result.critical_failed == ["oom"]
    assert "oom (High)" in result.reason


def test_critical_failure_fails_even_with_zero_thresholds() -> None:
    metrics = [judged("oom", "Low", critical=True)]
    result = score(metrics, scoring(thresholds={"pass": 0, "marginal": 0}))
    assert result.classification == "fail"


def test_critical_no_data_counts_only_when_data_is_required() -> None:
    required = score([judged("a", "Pass"), judged("b", "NoData", critical=True)], ScoringSpec())
    assert required.critical_failure
    assert required.score == 0.0
    optional = score(
        [judged("a", "Pass"), judged("b", "NoData", critical=True, must_have_data=False)],
        ScoringSpec(),
    )
    assert not optional.critical_failure
    assert optional.score == 100.0


def test_a_passing_critical_metric_does_not_force_anything() -> None:
    result = score([judged("a", "Pass", critical=True), judged("b", "High")], ScoringSpec())
    assert result.score == 50.0
    assert not result.critical_failure


def test_nothing_judged_is_nodata_never_a_pass() -> None:
    empty = score([], ScoringSpec())
    assert empty.score is None
    assert empty.classification == "nodata"
    quiet = score([judged("a", "NoData", must_have_data=False)], ScoringSpec())
    assert quiet.score is None
    assert quiet.classification == "nodata"
    assert "1 without data" in quiet.reason
    # Even thresholds of 0 cannot turn "saw nothing" into a pass.
    lenient = score([], scoring(thresholds={"pass": 0, "marginal": 0}))
    assert lenient.classification == "nodata"


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="marginal"):
        scoring(thresholds={"pass": 50, "marginal": 60})
    assert scoring(thresholds={"pass": 60, "marginal": 60}).thresholds.marginal == 60.0


def test_group_names_must_be_unique() -> None:
    with pytest.raises(ValidationError, match="more than once"):
        scoring(groups=[{"name": "a", "weight": 1}, {"name": "a", "weight": 2}])
