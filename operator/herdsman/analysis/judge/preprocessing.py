"""The judge's preprocessing: turn what a query returned into a sample that can be compared.

Two things happen, each counted so the AnalysisRun status can show what was thrown away:

* Non-finite points. Prometheus returns NaN for 0/0 and +-Inf for x/0 (a rate ratio over a window
  without traffic); neither is a measurement. `nanStrategy: remove` drops them; `replace` turns
  them into 0, for counters that are absent until the first event. Infinities are treated like
  NaN on purpose: "replace" then means "no traffic, nothing went wrong", and "remove" keeps a
  single division by zero from dominating the ranks.
* Outliers (`outliers: remove`): points outside Tukey's fences, [Q1 - 1.5 IQR, Q3 + 1.5 IQR],
  computed per group. When the IQR is 0 (most points share one value, the usual shape of an
  error counter) nothing is removed: every fence would sit on that value, and "remove outliers"
  would silently turn "5% of the points show errors" into "no errors".

The sample comes back sorted: the Mann-Whitney test and the Hodges-Lehmann estimates use ranks
and order statistics only, so order carries no information, and sorting once here makes the
medians, quartiles and pairwise-difference searches later on cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from herdsman.api.judge import JudgeSpec, SampleSummary

FloatArray = npt.NDArray[np.float64]

# Tukey's classic fence factor, as Kayenta uses for its IQR outlier filter.
IQR_FENCE = 1.5


@dataclass(frozen=True)
class Preprocessed:
    """A sample ready for the test, and what preprocessing did to get there.

    `values` is sorted ascending and holds only finite numbers.
    """

    values: FloatArray
    input_count: int
    nan_removed: int
    nan_replaced: int
    outliers_removed: int

    @property
    def count(self) -> int:
        return int(self.values.size)

    @property
    def median(self) -> float | None:
        """Median of the sample, None when it is empty."""
        return quantile_sorted(self.values, 0.5) if self.values.size else None

    def summary(self) -> SampleSummary:
        median = self.median
        return SampleSummary(
            input_count=self.input_count,
            nan_removed=self.nan_removed,
            nan_replaced=self.nan_replaced,
            outliers_removed=self.outliers_removed,
            count=self.count,
            median=median if median is not None and np.isfinite(median) else None,
        )


def quantile_sorted(values: FloatArray, q: float) -> float:
    """The q-quantile of an already sorted, non-empty array, interpolated linearly.

    Same definition as numpy's default ("linear", type 7); done by index here because the data is
    sorted already and np.quantile's call overhead is most of its cost on 1,000 points.
    """
    position = (values.size - 1) * q
    lower = int(np.floor(position))
    upper = min(lower + 1, values.size - 1)
    low, high = float(values[lower]), float(values[upper])
    if low == high:
        return low
    # Written as a weighted mean rather than low + f * (high - low): the difference of two large
    # finite numbers can overflow to infinity, the halves cannot.
    fraction = position - lower
    return low * (1.0 - fraction) + high * fraction


def preprocess(values: Sequence[float] | FloatArray, spec: JudgeSpec) -> Preprocessed:
    """Apply the spec's NaN strategy, then (optionally) the IQR outlier filter, to one group."""
    raw = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(raw)
    non_finite = int(raw.size - np.count_nonzero(finite))
    nan_removed = nan_replaced = 0
    if non_finite == 0:
        kept = raw
    elif spec.nan_strategy == "replace":
        kept = np.where(finite, raw, 0.0)
        nan_replaced = non_finite
    else:
        kept = raw[finite]
        nan_removed = non_finite
    ordered = np.sort(kept)

    outliers_removed = 0
    # Below 4 points the quartiles are interpolations between the points themselves: no point
    # can stand out from a spread it defines.
    if spec.outliers == "remove" and ordered.size >= 4:
        ordered, outliers_removed = _drop_outliers(ordered)

    return Preprocessed(
        values=ordered,
        input_count=int(raw.size),
        nan_removed=nan_removed,
        nan_replaced=nan_replaced,
        outliers_removed=outliers_removed,
    )


def _drop_outliers(ordered: FloatArray) -> tuple[FloatArray, int]:
    """Tukey's fences on a sorted sample; returns the kept slice and how many points went."""
    q1 = quantile_sorted(ordered, 0.25)
    q3 = quantile_sorted(ordered, 0.75)
    # Halves again, so the spread of two huge quartiles cannot overflow.
    half_iqr = q3 / 2 - q1 / 2
    if not half_iqr > 0.0:  # a zero IQR: see the module docstring
        return ordered, 0
    low = q1 - 2 * IQR_FENCE * half_iqr
    high = q3 + 2 * IQR_FENCE * half_iqr
    start = int(np.searchsorted(ordered, low, side="left"))
    stop = int(np.searchsorted(ordered, high, side="right"))
    return ordered[start:stop], int(ordered.size - (stop - start))
