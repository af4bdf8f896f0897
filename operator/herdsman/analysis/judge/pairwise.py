"""Order statistics of all pairwise differences, without forming every pair.

The shift estimate that goes with the Mann-Whitney test is the Hodges-Lehmann estimator: the
median of the n*m differences canary[j] - baseline[i]. Its distribution-free confidence interval
(Bauer 1972; what R's `wilcox.test(conf.int=TRUE)` and Kayenta report) is a pair of order
statistics of the same differences, the k-th smallest and the k-th largest, where k is the
critical value of U. So the judge needs three (or four) order statistics of n*m numbers.

For 1,000 points per group that is 10^6 differences: building and partitioning them costs about
10 ms per metric, the whole budget of a 50-metric analysis. `order_statistics` *selects* them
from the two sorted samples instead. The answer is exact, not an approximation: the very numbers
a brute-force sort of every computed difference fl(y - x) yields (the unit tests check that).

1. Ties. When the samples hold few distinct values (integer counters), the differences of the
   distinct values, weighted by their multiplicities, are few: they are listed and searched.
2. Seed. GRID evenly spaced order statistics of each sample give GRID^2 differences whose
   quantiles are close to the full set's: the error is second order in the grid step, measured
   below 7 grid units (nm / GRID^2 ranks) on normal, lognormal, Cauchy, Poisson, rounded,
   zero-inflated and bimodal samples. Two candidates go SEED_MARGIN units either side of each
   wanted rank.
3. Probe. "How many differences are <= d" is one `searchsorted` of the canary against the
   baseline (y - x <= d when x >= y - d, fixed up where rounding makes the two disagree),
   O(m log n); every candidate of every wanted rank is counted in the same call. Candidates on
   either side of a rank bracket it.
4. List. A bracket holding at most BAND_PAIRS pairs is listed (the searchsorted rows of its two
   ends say which baseline points pair with each canary point) and partitioned.
5. Otherwise (the seed missed: ties, odd shapes) the bracket is narrowed further: linear
   interpolation of the rank inside it, the grid with wider margins, value thirds, and a test of
   whether a single tied value fills the bracket. Every probe shrinks the bracket.

Cost at 1,000 x 1,000 points, for the HL estimate and both CI bounds together: one probe
(6,000 binary searches) and ~6,500 listed pairs, measured at ~0.3 ms, against
~10 ms for the full matrix; a second probe when the seed misses. Up to DIRECT_PAIRS pairs the
full matrix is cheaper than any of this and is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
RankPair = tuple[int, int]

DIRECT_PAIRS = 8192
BAND_PAIRS = 16384
GRID = 96
# In grid units of n*m / GRID^2 ranks. Measured seed errors stay below 7 (step 2); a miss only
# costs a second probe, a wider margin costs listing more pairs every time.
SEED_MARGIN = 10.0
MAX_PROBES = 200
# Above this magnitude y - x can overflow; both samples are then scaled by a power of two (exact).
_HUGE = 2.0**1000


def order_statistics(
    baseline: FloatArray, canary: FloatArray, ranks: Sequence[RankPair]
) -> list[tuple[float, float]]:
    """For each (first, last): the first-th and last-th smallest (1-based) canary[j] - baseline[i].

    Ranks come in pairs so that the two middle order statistics of an even count (whose mean is
    the median) share one search; for a single rank pass (r, r). Both samples must be sorted
    ascending, non-empty and finite, and 1 <= first <= last <= n*m.
    """
    peak = max(abs(baseline[0]), abs(baseline[-1]), abs(canary[0]), abs(canary[-1]))
    if peak > _HUGE:
        scale = 2.0**-8
        scaled = _select(baseline * scale, canary * scale, ranks)
        return [(low / scale, high / scale) for low, high in scaled]
    return _select(baseline, canary, ranks)


def _select(xs: FloatArray, ys: FloatArray, ranks: Sequence[RankPair]) -> list[tuple[float, float]]:
    if xs.size * ys.size <= DIRECT_PAIRS:
        diffs = np.subtract.outer(ys, xs).ravel()
        return _pick(diffs, ranks, 0)
    distinct_x = 1 + int(np.count_nonzero(xs[1:] != xs[:-1]))
    distinct_y = 1 + int(np.count_nonzero(ys[1:] != ys[:-1]))
    if distinct_x * distinct_y <= DIRECT_PAIRS:
        return _select_weighted(xs, ys, ranks)
    return _Search(xs, ys, ranks).run()


def _pick(diffs: FloatArray, ranks: Sequence[RankPair], offset: int) -> list[tuple[float, float]]:
    """Order statistics (ranks counted from `offset` + 1) of an unsorted array, by partitioning."""
    kth = sorted({r - offset - 1 for pair in ranks for r in pair})
    part = np.partition(diffs, kth)
    return [(float(part[f - offset - 1]), float(part[la - offset - 1])) for f, la in ranks]


def _select_weighted(
    xs: FloatArray, ys: FloatArray, ranks: Sequence[RankPair]
) -> list[tuple[float, float]]:
    """Step 1: differences of the distinct values, weighted by how often each pair occurs."""
    values_x, counts_x = np.unique(xs, return_counts=True)
    values_y, counts_y = np.unique(ys, return_counts=True)
    diffs = np.subtract.outer(values_y, values_x).ravel()
    weights = np.multiply.outer(counts_y, counts_x).ravel()
    order = np.argsort(diffs, kind="stable")
    ordered = diffs[order]
    cumulative = np.cumsum(weights[order])
    # The r-th smallest is the first distinct difference whose cumulative weight reaches r.
    flat = [r for pair in ranks for r in pair]
    found = ordered[np.searchsorted(cumulative, flat, side="left")].tolist()
    return [(found[2 * i], found[2 * i + 1]) for i in range(len(ranks))]


@lru_cache(maxsize=64)
def _grid_index(size: int) -> IntArray:
    """GRID evenly spaced positions (plotting positions (i + 1/2) / GRID) into a sample."""
    index = ((np.arange(GRID) + 0.5) * (size / GRID)).astype(np.intp)
    index.setflags(write=False)
    return index


@dataclass
class _Bracket:
    """One wanted rank pair: c_lo differences are <= a, c_hi are <= b, c_lo < first <= last <= c_hi.

    row_a / row_b are the searchsorted rows of a and b (None: a = -inf, b = +inf); the pairs
    between them are exactly the differences in (a, b]. lo / hi are real differences in the
    bracket (the smallest above a, the largest at or below b), used to place candidates.
    """

    first: int
    last: int
    c_lo: int
    c_hi: int
    lo: float
    hi: float
    row_a: IntArray | None = None
    row_b: IntArray | None = None
    stalls: int = 0
    last_band: int = 0
    result: tuple[float, float] | None = None

    @property
    def band(self) -> int:
        return self.c_hi - self.c_lo


class _Search:
    """Steps 2-5 of the module docstring, for several rank pairs at once."""

    def __init__(self, xs: FloatArray, ys: FloatArray, ranks: Sequence[RankPair]) -> None:
        self.xs, self.ys = xs, ys
        self.n, self.m = xs.size, ys.size
        self.total = self.n * self.m
        lowest, highest = float(ys[0] - xs[-1]), float(ys[-1] - xs[0])
        self.brackets = [
            _Bracket(f, la, 0, self.total, lowest, highest, last_band=self.total) for f, la in ranks
        ]
        self.padded = np.concatenate(([-np.inf], xs, [np.inf]))
        grid_x = xs[_grid_index(self.n)]
        grid_y = ys[_grid_index(self.m)]
        self.grid = np.subtract.outer(grid_y, grid_x).ravel()

    def run(self) -> list[tuple[float, float]]:
        todo = self.brackets
        candidates = self._from_grid(todo, [SEED_MARGIN] * len(todo))
        for _ in range(MAX_PROBES):
            self._probe(todo, candidates)
            todo = [b for b in todo if b.result is None and b.band > BAND_PAIRS]
            if not todo:
                break
            todo, candidates = self._narrow(todo)
            if not todo:
                break
        self._list([b for b in self.brackets if b.result is None])
        return [b.result for b in self.brackets if b.result is not None]

    def _from_grid(self, todo: list[_Bracket], margins: list[float]) -> list[tuple[float, float]]:
        """Candidates `margin` grid units either side of where the grid puts each wanted rank."""
        top = self.grid.size - 1
        positions = []
        for bracket, margin in zip(todo, margins, strict=True):
            middle = (bracket.first + bracket.last - 1) / 2.0 / self.total
            spread = margin / GRID**2
            positions.append(int(min(max(middle - spread, 0.0), 1.0) * top))
            positions.append(int(min(max(middle + spread, 0.0), 1.0) * top))
        values = np.partition(self.grid, sorted(set(positions)))[positions].tolist()
        candidates = []
        for i in range(len(todo)):
            low, high = values[2 * i], values[2 * i + 1]
            if low == high:
                # The grid sees a tie there: probing just below the value and at it brackets
                # exactly the pairs equal to it.
                low = math.nextafter(high, -math.inf)
            candidates.append((low, high))
        return candidates

    def _probe(self, todo: list[_Bracket], candidates: list[tuple[float, float]]) -> None:
        """Count the differences <= each candidate and tighten the brackets (step 3)."""
        points = np.array([d for pair in candidates for d in pair])
        index = self._boundaries(points)
        counted = (self.total - index.sum(axis=1)).tolist()
        for i, bracket in enumerate(todo):
            for j in (2 * i, 2 * i + 1):
                count = counted[j]
                if count < bracket.first:
                    if count >= bracket.c_lo:
                        bracket.c_lo, bracket.row_a = count, index[j]
                elif count >= bracket.last:
                    if count <= bracket.c_hi:
                        bracket.c_hi, bracket.row_b = count, index[j]
                    break
                else:
                    # first <= count < last splits a middle pair: it is the largest difference
                    # at or below the candidate and the smallest above it.
                    bracket.result = (self._at_or_below(index[j]), self._above(index[j]))
                    break

    def _boundaries(self, points: FloatArray) -> npt.NDArray[np.intp]:
        """Per point d and canary value y: the first baseline index whose difference is <= d.

        The differences are the computed fl(y - x), not the real y - x, so that the counts agree
        exactly with the differences that `_list` (and a brute-force check) produce. Searching for
        fl(y - d) finds that boundary up to rounding: when x sits within an ulp of y - d (values
        of very different magnitudes, or d itself a computed difference, as in the tie test) the
        two can disagree. Those rows are fixed up by moving the boundary over whole runs of equal
        baseline values, which takes no round at all for almost every probe.
        """
        xs, ys = self.xs, self.ys
        d = points[:, None]
        index = np.searchsorted(xs, (ys - d).ravel(), side="left").reshape(points.size, self.m)
        # Sentinels instead of bounds masks: padded[i] is xs[i - 1], -inf and +inf at the ends.
        padded, after = self.padded, self.padded[1:]
        for _ in range(self.n + 1):
            before = padded.take(index)
            at = after.take(index)
            left = ys - before <= d
            right = ys - at > d
            if not (left.any() or right.any()):
                break
            index[left] = np.searchsorted(xs, before[left], side="left")
            index[right] = np.searchsorted(xs, at[right], side="right")
        return index

    def _above(self, row: IntArray | None) -> float:
        """The smallest difference above the value whose searchsorted row this is."""
        if row is None:
            return float(self.ys[0] - self.xs[-1])
        valid = row > 0
        return float((self.ys[valid] - self.xs[row[valid] - 1]).min())

    def _at_or_below(self, row: IntArray | None) -> float:
        """The largest difference at or below the value whose searchsorted row this is."""
        if row is None:
            return float(self.ys[-1] - self.xs[0])
        valid = row < self.n
        return float((self.ys[valid] - self.xs[row[valid]]).max())

    def _narrow(self, todo: list[_Bracket]) -> tuple[list[_Bracket], list[tuple[float, float]]]:
        """Step 5: next candidates for brackets still too wide; closes single-valued ones."""
        still: list[_Bracket] = []
        candidates: list[tuple[float, float]] = []
        regrid: list[int] = []
        for bracket in todo:
            lo = max(self._above(bracket.row_a), bracket.lo)
            hi = min(self._at_or_below(bracket.row_b), bracket.hi)
            bracket.lo, bracket.hi = lo, hi
            if lo >= hi:
                bracket.result = (hi, hi)
                continue
            band = bracket.band
            bracket.stalls = bracket.stalls + 1 if 4 * band > bracket.last_band else 0
            bracket.last_band = band
            stalls = bracket.stalls
            below_hi = math.nextafter(hi, -math.inf)
            if stalls == 0:
                # Linear interpolation of the wanted rank inside the bracket, with slack.
                middle = (bracket.first + bracket.last - 1) / 2.0
                position = (middle - bracket.c_lo) / band
                slack = (BAND_PAIRS / 4) / band
                t_low = min(max(position - slack, 0.0), 1.0)
                t_high = min(max(position + slack, 0.0), 1.0)
                pair = (lo * (1.0 - t_low) + hi * t_low, lo * (1.0 - t_high) + hi * t_high)
            elif stalls <= 3:
                # The seed missed (one end is still the extreme difference): the grid again,
                # with a margin four times wider per stall.
                regrid.append(len(candidates))
                pair = (lo, below_hi)
            elif stalls % 2 == 0:
                # Heavy tails: value thirds shrink the bracket to a third whatever the data.
                pair = (lo * (2.0 / 3.0) + hi / 3.0, lo / 3.0 + hi * (2.0 / 3.0))
            else:
                # Ties: does one value fill the bracket from either end?
                pair = (lo, below_hi)
            still.append(bracket)
            candidates.append(pair)
        if regrid:
            margins = [SEED_MARGIN * 4.0 ** still[i].stalls for i in regrid]
            for i, pair in zip(
                regrid, self._from_grid([still[i] for i in regrid], margins), strict=True
            ):
                candidates[i] = pair
        clamped = []
        for bracket, (low, high) in zip(still, candidates, strict=True):
            below_hi = math.nextafter(bracket.hi, -math.inf)
            clamped.append(
                (min(max(low, bracket.lo), below_hi), min(max(high, bracket.lo), below_hi))
            )
        return still, clamped

    def _list(self, todo: list[_Bracket]) -> None:
        """Step 4: list every pair inside the remaining brackets, partition each bracket's."""
        if not todo:
            return
        n, m = self.n, self.m
        starts = np.concatenate(
            [np.zeros(m, dtype=np.intp) if b.row_b is None else b.row_b for b in todo]
        )
        stops = np.concatenate(
            [np.full(m, n, dtype=np.intp) if b.row_a is None else b.row_a for b in todo]
        )
        lengths = stops - starts
        ends = np.cumsum(lengths)
        # Pair p of canary row r pairs with baseline index starts[r] + (p - first pair of r).
        ys = np.repeat(np.tile(self.ys, len(todo)), lengths)
        xi = np.arange(int(ends[-1])) - np.repeat(ends - lengths - starts, lengths)
        diffs = ys - self.xs[xi]
        bounds = [0, *ends[m - 1 :: m].tolist()]
        for i, bracket in enumerate(todo):
            segment = diffs[bounds[i] : bounds[i + 1]]
            bracket.result = _pick(segment, [(bracket.first, bracket.last)], bracket.c_lo)[0]
