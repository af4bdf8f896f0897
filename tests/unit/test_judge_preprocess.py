"""Judge preprocessing: NaN strategies, Tukey's IQR fences, and the counts the status shows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herdsman.analysis.judge import JudgeSpec, preprocess
from herdsman.analysis.judge.preprocessing import quantile_sorted

pytestmark = pytest.mark.unit

NAN = float("nan")
INF = float("inf")


def test_nan_and_infinities_are_removed_and_counted() -> None:
    out = preprocess([3.0, NAN, 1.0, INF, -INF, 2.0], JudgeSpec())
    assert out.values.tolist() == [1.0, 2.0, 3.0]  # sorted, finite
    assert (out.input_count, out.nan_removed, out.nan_replaced, out.count) == (6, 3, 0, 3)


def test_nan_replace_turns_missing_points_into_zero() -> None:
    out = preprocess([5.0, NAN, INF], JudgeSpec(nan_strategy="replace"))
    assert out.values.tolist() == [0.0, 0.0, 5.0]
    assert (out.nan_removed, out.nan_replaced, out.count) == (0, 2, 3)


def test_empty_and_nan_only_input_give_an_empty_sample_without_a_median() -> None:
    for values in ([], [NAN, NAN]):
        out = preprocess(values, JudgeSpec(outliers="remove"))
        assert out.count == 0
        assert out.median is None
        assert out.summary().median is None


def test_iqr_removal_drops_points_beyond_the_fences_only_when_asked() -> None:
    values = [*range(1, 21), 1000.0, -500.0]
    kept = preprocess(values, JudgeSpec(outliers="keep"))
    removed = preprocess(values, JudgeSpec(outliers="remove"))
    assert kept.count == 22
    assert kept.outliers_removed == 0
    assert removed.values.tolist() == [float(v) for v in range(1, 21)]
    assert removed.outliers_removed == 2
    assert removed.summary().outliers_removed == 2


def test_iqr_removal_keeps_points_exactly_on_a_fence() -> None:
    # Quartiles 1 and 2 (numpy's linear definition): fences at 1 - 1.5 and 2 + 1.5.
    values = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, -0.5, 3.5]
    q1, q3 = np.percentile(values, [25, 75])
    assert (q1, q3) == (1.0, 2.0)
    assert preprocess(values, JudgeSpec(outliers="remove")).outliers_removed == 0
    assert preprocess([*values, 3.5001], JudgeSpec(outliers="remove")).outliers_removed == 1


def test_a_zero_iqr_removes_nothing_so_rare_errors_stay_visible() -> None:
    # 95% of the points are 0; fences at 0 would call every error an outlier.
    values = [0.0] * 95 + [1.0, 3.0, 2.0, 7.0, 1.0]
    out = preprocess(values, JudgeSpec(outliers="remove"))
    assert out.outliers_removed == 0
    assert out.count == 100


def test_tiny_samples_are_not_filtered() -> None:
    out = preprocess([1.0, 2.0, 1000.0], JudgeSpec(outliers="remove"))
    assert out.count == 3


def test_nan_handling_happens_before_outlier_removal() -> None:
    out = preprocess([NAN] * 10 + [1.0, 2.0, 3.0, 4.0, 100.0], JudgeSpec(outliers="remove"))
    assert (out.nan_removed, out.outliers_removed, out.count) == (10, 1, 4)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-1e12, 1e12), min_size=1, max_size=40), st.floats(0.0, 1.0))
def test_quantile_matches_numpy(values: list[float], q: float) -> None:
    ordered = np.sort(np.array(values))
    assert math.isclose(
        quantile_sorted(ordered, q), float(np.quantile(ordered, q)), rel_tol=1e-12, abs_tol=1e-6
    )


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-1e6, 1e6), st.integers(-3, 3).map(float), st.just(NAN)),
        max_size=60,
    )
)
def test_iqr_filter_matches_the_textbook_definition(values: list[float]) -> None:
    out = preprocess(values, JudgeSpec(outliers="remove"))
    finite = np.sort(np.array([v for v in values if not math.isnan(v)]))
    if finite.size >= 4:
        q1, q3 = np.quantile(finite, [0.25, 0.75])
        iqr = q3 - q1
        expected = (
            finite if iqr == 0 else finite[(finite >= q1 - 1.5 * iqr) & (finite <= q3 + 1.5 * iqr)]
        )
    else:
        expected = finite
    # Fences computed with halves may differ from numpy's in the last bit; allow one point.
    assert abs(out.count - expected.size) <= 1
    assert out.count + out.outliers_removed + out.nan_removed == len(values)
    assert np.all(np.diff(out.values) >= 0)
