"""Metric classification: the classic pitfalls behave as documented, and the statistics hold up."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from herdsman.analysis.judge import MIN_POINTS, JudgeSpec, MetricJudgement, classify

pytestmark = pytest.mark.unit

NAN = float("nan")


def sample(seed: int, size: int = 200, loc: float = 100.0, scale: float = 10.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, scale, size)


def wire_is_json_safe(judgement: MetricJudgement) -> None:
    json.dumps(judgement.to_wire(), allow_nan=False)


# --- the pitfalls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["increase", "decrease", "either"])
def test_identical_samples_pass(direction: str) -> None:
    values = sample(1)
    j = classify("latency", values, values.copy(), JudgeSpec(direction=direction))
    assert j.classification == "Pass"
    assert j.p_value == pytest.approx(1.0)
    assert j.shift == 0.0
    assert j.ratio == 1.0
    assert not j.significant
    wire_is_json_safe(j)


@pytest.mark.parametrize(
    ("direction", "expected"), [("increase", "High"), ("either", "High"), ("decrease", "Pass")]
)
def test_a_clear_increase_fails_only_where_increases_regress(direction: str, expected: str) -> None:
    j = classify("latency", sample(1), sample(2) * 1.3, JudgeSpec(direction=direction))
    assert j.classification == expected
    assert j.significant
    assert j.p_value is not None
    assert j.p_value < 1e-10
    assert j.ratio is not None
    assert j.ratio > 1.2
    assert j.statistic is not None
    assert j.statistic > 200 * 200 / 2
    if expected == "Pass":
        assert "direction=decrease allows" in j.reason


@pytest.mark.parametrize(
    ("direction", "expected"), [("decrease", "Low"), ("either", "Low"), ("increase", "Pass")]
)
def test_a_clear_decrease_fails_only_where_decreases_regress(direction: str, expected: str) -> None:
    j = classify("throughput", sample(1), sample(2) * 0.7, JudgeSpec(direction=direction))
    assert j.classification == expected
    assert j.ratio is not None
    assert j.ratio < 0.8


def test_a_significant_change_within_the_allowance_passes() -> None:
    base, can = sample(1, 2000), sample(2, 2000) * 1.05
    strict = classify("latency", base, can, JudgeSpec(direction="increase"))
    tolerant = classify("latency", base, can, JudgeSpec(direction="increase", allowed_increase=1.1))
    assert strict.classification == "High"
    assert tolerant.classification == "Pass"
    assert tolerant.significant
    assert "within allowedIncrease 1.1" in tolerant.reason


def test_the_decrease_allowance_mirrors_the_increase_allowance() -> None:
    base, can = sample(1, 2000), sample(2, 2000) * 0.95
    assert classify("rps", base, can, JudgeSpec(direction="decrease")).classification == "Low"
    tolerant = classify("rps", base, can, JudgeSpec(direction="decrease", allowed_decrease=0.9))
    assert tolerant.classification == "Pass"
    assert "within allowedDecrease 0.9" in tolerant.reason


def test_effect_size_holds_back_changes_whose_medians_barely_moved() -> None:
    base, can = sample(1, 2000), sample(2, 2000) * 1.05
    j = classify("latency", base, can, JudgeSpec(effect_size=0.2))
    assert j.classification == "Pass"
    assert "less than effectSize 20%" in j.reason
    assert j.effect_size is not None
    assert 0.02 < j.effect_size < 0.08
    assert classify("latency", base, can, JudgeSpec(effect_size=0.01)).classification == "High"


def test_identical_constants_pass() -> None:
    j = classify("queue", [7.0] * 50, [7.0] * 40, JudgeSpec())
    assert j.classification == "Pass"
    assert "constant 7" in j.reason
    assert (j.p_value, j.shift, j.ratio, j.effect_size) == (1.0, 0.0, 1.0, 0.0)
    wire_is_json_safe(j)


def test_baseline_constant_zero_against_canary_constant_five_is_a_regression() -> None:
    j = classify("errors", [0.0] * 20, [5.0] * 20, JudgeSpec(direction="increase"))
    assert j.classification == "High"
    assert j.statistic == 400.0  # every canary point above every baseline point
    assert j.shift == 5.0
    assert j.ratio is None  # no finite ratio to a median of 0...
    assert j.effect_size is None
    assert "baseline median is 0" in j.reason  # ...and the reason says why
    wire_is_json_safe(j)
    assert (
        classify("errors", [0.0] * 20, [5.0] * 20, JudgeSpec(direction="decrease")).classification
        == "Pass"
    )


def test_a_zero_baseline_median_with_no_shift_is_no_change() -> None:
    base = [0.0] * 30 + [1.0] * 10
    j = classify("errors", base, list(base), JudgeSpec())
    assert j.classification == "Pass"
    assert j.ratio == 1.0
    assert j.ratio_lower is None  # the interval has no ratio either
    wire_is_json_safe(j)


@pytest.mark.parametrize(("n", "m"), [(0, 10), (10, 0), (1, 1), (2, 50), (50, 2)])
def test_samples_below_the_minimum_are_no_data(n: int, m: int) -> None:
    j = classify("latency", [1.0 + i for i in range(n)], [100.0 + i for i in range(m)], JudgeSpec())
    assert j.classification == "NoData"
    assert f"at least {MIN_POINTS} needed" in j.reason
    assert j.p_value is None
    assert j.statistic is None
    assert j.test_method == "none"


def test_samples_too_small_to_ever_be_significant_are_no_data_not_pass() -> None:
    # 3 + 3 points, completely separated: the best possible exact p-value is 2/20 = 0.1.
    j = classify("latency", [1.0, 2.0, 3.0], [10.0, 11.0, 12.0], JudgeSpec())
    assert j.classification == "NoData"
    assert "cannot reach 95% confidence" in j.reason
    assert "0.1" in j.reason
    # Tied constants would fool the normal approximation (p = 0.047); the guard holds.
    assert classify("errors", [0.0] * 3, [5.0] * 3, JudgeSpec()).classification == "NoData"


def test_four_points_each_can_be_judged_at_95_but_not_at_99_percent() -> None:
    base, can = [1.0, 2.0, 3.0, 4.0], [10.0, 11.0, 12.0, 13.0]
    j = classify("latency", base, can, JudgeSpec())
    assert j.classification == "High"
    assert j.test_method == "exact"
    assert j.p_value == pytest.approx(2 / 70)
    assert classify("latency", base, can, JudgeSpec(confidence=0.99)).classification == "NoData"


def test_nan_only_input_is_no_data() -> None:
    j = classify("latency", [NAN] * 10, [1.0, 2.0, 3.0, 4.0], JudgeSpec())
    assert j.classification == "NoData"
    assert j.baseline.input_count == 10
    assert j.baseline.nan_removed == 10
    assert j.baseline.count == 0
    assert j.baseline.median is None
    assert "(10 removed)" in j.reason
    wire_is_json_safe(j)


def test_nan_replaced_with_zero_compares_absent_counters_as_zero() -> None:
    j = classify("errors", [NAN] * 10, [NAN] * 12, JudgeSpec(nan_strategy="replace"))
    assert j.classification == "Pass"
    assert (j.baseline.nan_replaced, j.canary.nan_replaced) == (10, 12)
    assert "constant 0" in j.reason


def test_negative_valued_metrics_keep_the_ratio_direction() -> None:
    # A metric around -100 moving up to -70: the ratio must say "up" (> 1), not 0.7.
    j = classify("drift", sample(1, loc=-100.0), sample(2, loc=-70.0), JudgeSpec())
    assert j.classification == "High"
    assert j.ratio is not None
    assert j.ratio == pytest.approx(1.3, abs=0.05)


def test_outlier_removal_is_counted_per_group() -> None:
    # Evenly spread points: nothing inside them lies beyond Tukey's fences.
    base = [*np.linspace(90.0, 110.0, 100), 1e6]
    can = [*np.linspace(91.0, 111.0, 100), 1e6, -1e6]
    j = classify("latency", base, can, JudgeSpec(outliers="remove"))
    assert (j.baseline.outliers_removed, j.canary.outliers_removed) == (1, 2)
    assert (j.baseline.count, j.canary.count) == (100, 100)


# --- the statistics --------------------------------------------------------------------------------


def test_the_judgement_carries_its_configuration_and_every_number() -> None:
    spec = JudgeSpec(group="latency", critical=True, direction="increase", confidence=0.99)
    j = classify("p99", sample(1), sample(2) * 1.2, spec)
    assert (j.name, j.group, j.critical, j.direction, j.confidence) == (
        "p99",
        "latency",
        True,
        "increase",
        0.99,
    )
    wire = j.to_wire()
    for key in (
        "statistic", "pValue", "shift", "shiftLower", "shiftUpper",
        "ratio", "ratioLower", "ratioUpper", "effectSize", "testMethod",
    ):  # fmt: skip
        assert key in wire, key
    assert wire["baseline"]["count"] == 200
    assert j.shift_lower is not None
    assert j.shift_upper is not None
    assert j.shift is not None
    assert j.shift_lower <= j.shift <= j.shift_upper
    assert j.ratio_lower is not None
    assert j.ratio_upper is not None
    assert j.ratio_lower <= j.ratio <= j.ratio_upper


def test_hodges_lehmann_estimate_matches_the_brute_force_definition() -> None:
    base, can = sample(3, 150), sample(4, 170) + 3.0
    j = classify("m", base, can, JudgeSpec())
    assert j.shift == pytest.approx(float(np.median(np.subtract.outer(can, base))), abs=1e-12)
    median = float(np.median(base))
    assert j.ratio == pytest.approx(1 + j.shift / median)
    assert j.effect_size == pytest.approx((float(np.median(can)) - median) / median)


def test_method_is_exact_for_small_untied_samples_and_asymptotic_otherwise() -> None:
    assert classify("m", sample(1, 20), sample(2, 20), JudgeSpec()).test_method == "exact"
    tied = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert classify("m", tied, [3.0, 4.0, 5.0, 6.0, 7.0], JudgeSpec()).test_method == "asymptotic"
    assert classify("m", sample(1, 300), sample(2, 300), JudgeSpec()).test_method == "asymptotic"


@pytest.mark.parametrize("size", [30, 400])
def test_confidence_interval_covers_the_true_shift_at_the_nominal_rate(size: int) -> None:
    rng = np.random.default_rng(size)
    reps = 200 if size == 30 else 80
    covered = 0
    for _ in range(reps):
        base = rng.lognormal(3.0, 0.5, size)
        can = rng.lognormal(3.0, 0.5, size) + 2.0  # a pure location shift of +2
        j = classify("m", base, can, JudgeSpec(confidence=0.9))
        assert j.shift_lower is not None
        assert j.shift_upper is not None
        covered += j.shift_lower <= 2.0 <= j.shift_upper
    # 90% nominal; binomial noise over these repetitions stays well inside this band.
    assert 0.80 <= covered / reps <= 0.98


def test_false_alarm_rate_under_no_change_is_about_alpha() -> None:
    rng = np.random.default_rng(11)
    alarms = sum(
        classify("m", rng.lognormal(size=60), rng.lognormal(size=60), JudgeSpec()).classification
        != "Pass"
        for _ in range(300)
    )
    assert 0.02 <= alarms / 300 <= 0.09  # 5% nominal


def test_a_large_shift_is_detected_with_realistic_sample_sizes() -> None:
    # 10 minutes at a 15 s step: 40 points per group, p99 latency up 25%.
    rng = np.random.default_rng(5)
    detected = sum(
        classify(
            "p99", rng.lognormal(5.0, 0.2, 40), rng.lognormal(5.0, 0.2, 40) * 1.25,
            JudgeSpec(direction="increase", allowed_increase=1.1),
        ).classification == "High"
        for _ in range(50)
    )  # fmt: skip
    assert detected >= 45


def test_extreme_magnitudes_never_leak_nan_or_infinity() -> None:
    base = [1e308, 1.5e308, 1.7e308, 1.2e308, 1.1e308]
    can = [-1e308, -1.5e308, -1.7e308, -1.2e308, -1.1e308]
    j = classify("m", base, can, JudgeSpec())
    assert j.classification == "Low"
    wire_is_json_safe(j)
    tiny = classify("m", [5e-324] * 5 + [0.0] * 5, [1e300] * 10, JudgeSpec())
    assert tiny.classification == "High"
    wire_is_json_safe(tiny)
    assert all(
        v is None or math.isfinite(v)
        for v in (tiny.ratio, tiny.ratio_lower, tiny.ratio_upper, tiny.effect_size)
    )
