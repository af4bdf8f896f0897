"""Properties of the judge that must hold for any input, checked with hypothesis."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herdsman.analysis.judge import (
    MIN_POINTS,
    JudgeSpec,
    MetricJudgement,
    ScoringSpec,
    classify,
    preprocess,
    score,
)

pytestmark = pytest.mark.unit

NAN = float("nan")
MIRROR = {"High": "Low", "Low": "High", "Pass": "Pass", "NoData": "NoData"}
# Allowances that are exact in binary, so that 2 - a mirrors 1 + t without rounding.
TOLERANCES = [0.0, 0.0625, 0.125, 0.5]

point = st.one_of(
    st.integers(-5, 5).map(float),  # ties, zeros, negative values
    # Nothing near the subnormal range: scaling by 1/4 would underflow and change the data,
    # not the judge's answer.
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).filter(
        lambda v: v == 0 or abs(v) > 1e-300
    ),
    st.just(NAN),
)
points = st.lists(point, max_size=60)
shifted = st.builds(
    lambda values, factor, offset: [v * factor + offset for v in values],
    st.lists(st.floats(0.0, 100.0, allow_subnormal=False), min_size=3, max_size=60),
    st.sampled_from([1.0, 1.5, 4.0]),
    st.sampled_from([0.0, 1.0, 20.0]),
)


@st.composite
def specs(draw: st.DrawFn) -> JudgeSpec:
    tolerance = draw(st.sampled_from(TOLERANCES))
    return JudgeSpec(
        direction=draw(st.sampled_from(["increase", "decrease", "either"])),
        allowed_increase=1.0 + tolerance,
        allowed_decrease=1.0 - draw(st.sampled_from(TOLERANCES)),
        nan_strategy=draw(st.sampled_from(["remove", "replace"])),
        outliers=draw(st.sampled_from(["keep", "remove"])),
        confidence=draw(st.sampled_from([0.8, 0.9, 0.95, 0.99])),
        effect_size=draw(st.sampled_from([0.0, 0.125, 0.5])),
        critical=draw(st.booleans()),
        must_have_data=draw(st.booleans()),
        group=draw(st.sampled_from(["a", "b", "c"])),
    )


def json_safe(judgement: MetricJudgement) -> None:
    json.dumps(judgement.to_wire(), allow_nan=False)
    for value in judgement.model_dump().values():
        if isinstance(value, float):
            assert math.isfinite(value)


def judgeable(n: int, m: int, confidence: float) -> bool:
    """Could any arrangement of n + m distinct points be significant? (classify's step 2)"""
    if min(n, m) < MIN_POINTS:
        return False
    return 2.0 / math.comb(n + m, n) < 1.0 - confidence


@settings(max_examples=80, deadline=None)
@given(points, specs())
def test_identical_inputs_always_pass(values: list[float], spec: JudgeSpec) -> None:
    j = classify("m", values, list(values), spec)
    if j.classification == "NoData":
        assert not judgeable(j.baseline.count, j.canary.count, spec.confidence)
    else:
        assert j.classification == "Pass"
        assert not j.significant
    json_safe(j)


@settings(max_examples=80, deadline=None)
@given(st.one_of(points, shifted), st.one_of(points, shifted), specs())
def test_mirrored_data_and_direction_mirror_the_classification(
    base: list[float], can: list[float], spec: JudgeSpec
) -> None:
    mirrored = spec.model_copy(
        update={
            "direction": {"increase": "decrease", "decrease": "increase"}.get(
                spec.direction, spec.direction
            ),
            "allowed_increase": 2.0 - spec.allowed_decrease,
            "allowed_decrease": 2.0 - spec.allowed_increase,
        }
    )
    j = classify("m", base, can, spec)
    k = classify("m", [-v for v in base], [-v for v in can], mirrored)
    assert k.classification == MIRROR[j.classification]
    assert k.p_value == j.p_value
    if j.statistic is not None:
        assert k.statistic == j.baseline.count * j.canary.count - j.statistic
    if j.shift is not None:
        assert k.shift == -j.shift
    if j.shift_upper is not None:
        assert k.shift_lower == -j.shift_upper
    if j.effect_size is not None:
        assert k.effect_size == -j.effect_size


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(points, shifted), st.one_of(points, shifted), specs(), st.sampled_from([4.0, 0.25])
)
def test_rescaling_by_a_power_of_two_changes_nothing(
    base: list[float], can: list[float], spec: JudgeSpec, factor: float
) -> None:
    j = classify("m", base, can, spec)
    k = classify("m", [v * factor for v in base], [v * factor for v in can], spec)
    assert (k.classification, k.p_value, k.ratio, k.effect_size) == (
        j.classification,
        j.p_value,
        j.ratio,
        j.effect_size,
    )


extreme = st.one_of(
    point,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, -5e-324, 0.0, -0.0]),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(extreme, max_size=40), st.lists(extreme, max_size=40), specs())
def test_results_never_contain_nan_or_infinity(
    base: list[float], can: list[float], spec: JudgeSpec
) -> None:
    j = classify("m", base, can, spec)
    json_safe(j)
    if j.shift_lower is not None and j.shift_upper is not None and j.shift is not None:
        assert j.shift_lower <= j.shift <= j.shift_upper


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=2), specs())
def test_samples_that_cannot_reach_significance_are_never_judged(
    sizes: list[int], spec: JudgeSpec
) -> None:
    n, m = sizes[0], sizes[-1]
    # Completely separated samples: the strongest evidence n + m points can give.
    j = classify("m", [float(i) for i in range(n)], [1000.0 + i for i in range(m)], spec)
    if not judgeable(n, m, spec.confidence):
        assert j.classification == "NoData"
    elif spec.direction in ("increase", "either"):
        assert j.classification == "High"
    else:
        assert j.classification == "Pass"


outcomes = st.lists(
    st.tuples(st.sampled_from(["Pass", "High", "Low", "NoData"]), specs()), max_size=12
)


@settings(max_examples=100, deadline=None)
@given(
    outcomes,
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "d"]), st.floats(0.01, 100.0)),
        max_size=3,
        unique_by=lambda g: g[0],
    ),
    st.tuples(st.floats(0.0, 100.0), st.floats(0.0, 100.0)).map(sorted),
)
def test_score_is_bounded_and_consistent_with_its_classification(
    metrics: list[tuple[str, JudgeSpec]], groups: list[tuple[str, float]], thresholds: list[float]
) -> None:
    scoring = ScoringSpec.model_validate(
        {
            "groups": [{"name": n, "weight": w} for n, w in groups],
            "thresholds": {"marginal": thresholds[0], "pass": thresholds[1]},
        }
    )
    empty: dict[str, Any] = {"input_count": 0, "count": 0}
    judged = [
        (
            MetricJudgement.model_validate(
                {
                    "name": f"m{i}",
                    "classification": c,
                    "reason": "",
                    "baseline": empty,
                    "canary": empty,
                    "confidence": 0.95,
                }
            ),
            spec,
        )
        for i, (c, spec) in enumerate(metrics)
    ]
    result = score(judged, scoring)
    json.dumps(result.to_wire(), allow_nan=False)
    failed_critical = any(
        spec.critical and (c in ("High", "Low") or (c == "NoData" and spec.must_have_data))
        for c, spec in metrics
    )
    counted = [
        (c, spec) for c, spec in metrics if c != "NoData" or spec.must_have_data
    ]  # judged metrics
    if failed_critical:
        assert (result.score, result.classification) == (0.0, "fail")
    elif not counted:
        assert (result.score, result.classification) == (None, "nodata")
    else:
        assert result.score is not None
        assert 0.0 <= result.score <= 100.0
        expected = (
            "pass"
            if result.score >= thresholds[1]
            else "marginal"
            if result.score >= thresholds[0]
            else "fail"
        )
        assert result.classification == expected
        if all(c == "Pass" for c, _ in counted):
            assert result.score == 100.0
        if all(c != "Pass" for c, _ in counted):
            assert result.score == 0.0
    shares = [g.share for g in result.groups if g.share is not None]
    assert not shares or math.isclose(sum(shares), 100.0)


@settings(max_examples=40, deadline=None)
@given(points, specs())
def test_preprocessing_accounts_for_every_point(values: list[float], spec: JudgeSpec) -> None:
    out = preprocess(values, spec)
    assert out.count + out.nan_removed + out.outliers_removed == len(values)
    assert out.nan_replaced == (
        sum(math.isnan(v) for v in values) if spec.nan_strategy == "replace" else 0
    )
    assert np.all(np.isfinite(out.values))
