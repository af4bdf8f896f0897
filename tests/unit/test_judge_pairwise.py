"""Pairwise-difference order statistics: the selection must equal brute force, on every path."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herdsman.analysis.judge import pairwise
from herdsman.analysis.judge.pairwise import RankPair, order_statistics

pytestmark = pytest.mark.unit

Sampler = Callable[[np.random.Generator, int], np.ndarray]

SHAPES: dict[str, Sampler] = {
    "normal": lambda rng, n: rng.normal(size=n),
    "lognormal": lambda rng, n: rng.lognormal(sigma=2.0, size=n),
    "cauchy": lambda rng, n: rng.standard_cauchy(size=n),
    "poisson": lambda rng, n: rng.poisson(3, size=n).astype(float),
    "rounded": lambda rng, n: np.round(rng.lognormal(3.0, 1.0, size=n)),
    "zero-inflated": lambda rng, n: np.where(rng.random(n) < 0.6, 0.0, rng.exponential(size=n)),
    "bimodal": lambda rng, n: np.concatenate(
        [rng.normal(0.0, 1.0, n // 2), rng.normal(1e6, 1.0, n - n // 2)]
    ),
}


def brute(xs: np.ndarray, ys: np.ndarray, ranks: list[RankPair]) -> list[tuple[float, float]]:
    diffs = np.sort(np.subtract.outer(ys, xs).ravel())
    return [(float(diffs[f - 1]), float(diffs[la - 1])) for f, la in ranks]


def judge_ranks(n: int, m: int) -> list[RankPair]:
    """The ranks the classifier asks for: CI bounds around the HL median pair."""
    total = n * m
    k = max(1, int(total / 2 - 1.96 * np.sqrt(total * (n + m + 1) / 12)))
    return [(k, k), ((total + 1) // 2, total // 2 + 1), (total - k + 1, total - k + 1)]


@pytest.fixture
def force_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small samples through the bracket search (no direct or weighted shortcut), narrowing
    in many small steps, so every branch of it runs on data brute force can check."""
    monkeypatch.setattr(pairwise, "DIRECT_PAIRS", 0)
    monkeypatch.setattr(pairwise, "BAND_PAIRS", 8)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("n", "m"), [(1000, 1000), (300, 2000), (2000, 150), (95, 90), (7, 9)])
def test_selection_equals_brute_force(shape: str, n: int, m: int) -> None:
    rng = np.random.default_rng(hash((shape, n, m)) % 2**32)
    xs = np.sort(SHAPES[shape](rng, n))
    ys = np.sort(SHAPES[shape](rng, m) * 1.1 + 0.01)
    ranks = [*judge_ranks(n, m), (1, 1), (n * m, n * m)]
    assert order_statistics(xs, ys, ranks) == brute(xs, ys, ranks)


@pytest.mark.usefixtures("force_search")
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_bracket_search_narrowing_equals_brute_force(shape: str) -> None:
    rng = np.random.default_rng(7)
    xs = np.sort(SHAPES[shape](rng, 60))
    ys = np.sort(SHAPES[shape](rng, 45))
    ranks = [*judge_ranks(60, 45), (1, 2), (2700, 2700), (1350, 1351)]
    assert order_statistics(xs, ys, ranks) == brute(xs, ys, ranks)


def test_a_seed_that_misses_is_recovered(monkeypatch: pytest.MonkeyPatch) -> None:
    # A margin of almost nothing puts both seed candidates on one side of the rank.
    monkeypatch.setattr(pairwise, "SEED_MARGIN", 1e-6)
    rng = np.random.default_rng(3)
    xs = np.sort(rng.lognormal(sigma=2.0, size=500))
    ys = np.sort(rng.lognormal(sigma=2.0, size=400))
    ranks = judge_ranks(500, 400)
    assert order_statistics(xs, ys, ranks) == brute(xs, ys, ranks)


def test_huge_magnitudes_do_not_overflow_into_nan() -> None:
    xs = np.array([-1.5e308, -1e308, 0.0, 1e308, 1.5e308])
    ys = np.array([-1e308, 1e307, 1.2e308, 1.6e308])
    out = order_statistics(xs, ys, [(1, 1), (10, 11), (20, 20)])
    flat = [v for pair in out for v in pair]
    assert not any(np.isnan(flat))
    assert flat == sorted(flat)
    # Scaling by a power of two is exact, so the middle pair is exact too.
    expected = brute(xs / 256, ys / 256, [(10, 11)])[0]
    assert out[1] == (expected[0] * 256, expected[1] * 256)


values = st.one_of(
    st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
    st.integers(-4, 4).map(float),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(values, min_size=1, max_size=70),
    st.lists(values, min_size=1, max_size=70),
    st.data(),
)
def test_random_samples_and_ranks_through_the_search(
    base: list[float], can: list[float], data: st.DataObject
) -> None:
    xs, ys = np.sort(np.array(base)), np.sort(np.array(can))
    total = xs.size * ys.size
    rank = st.integers(1, total)
    ranks = []
    for _ in range(data.draw(st.integers(1, 4))):
        first = data.draw(rank)
        ranks.append((first, data.draw(st.integers(first, min(total, first + 1)))))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pairwise, "DIRECT_PAIRS", 0)
        patch.setattr(pairwise, "BAND_PAIRS", data.draw(st.sampled_from([1, 4, 64])))
        assert order_statistics(xs, ys, ranks) == brute(xs, ys, ranks)
