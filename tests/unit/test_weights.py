"""Replica arithmetic (herdsman.engine.weights) held to its promises for every input.

Everything the canary engine does to pods goes through these few functions, so their promises
are the rollout's promises: weights that are a valid split, a canary that exists whenever it
should carry traffic, rolling moves that stay between the floor and the ceiling and still get
there.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim import int_or_percent

from herdsman.engine.weights import (
    GroupCount,
    Limits,
    at_target,
    canary_replicas,
    limits,
    replica_split,
    step_towards,
    traffic_weights,
)

pytestmark = pytest.mark.unit

totals = st.integers(0, 60)
weights_ = st.integers(0, 100)


@st.composite
def limit_specs(draw: st.DrawFn, total: int | None = None) -> Limits:
    """Limits as the engine builds them from a CRD-valid maxSurge/maxUnavailable pair."""
    n = draw(totals) if total is None else total
    surge = draw(int_or_percent())
    # The CRD refuses both zero in either form (0 or "0%").
    unavailable = draw(
        int_or_percent().filter(lambda u: not (surge in (0, "0%") and u in (0, "0%")))
    )
    return limits(n, surge, unavailable)


# --- limits ---------------------------------------------------------------------------------------


@given(total=totals, surge=int_or_percent(), unavailable=int_or_percent())
def test_limits_always_allow_a_move_and_bracket_the_total(
    total: int, surge: int | str, unavailable: int | str
) -> None:
    # A rolling move needs room on at least one side; with none it could never start (the
    # Deployment controller resolves the 0/0 tie the same way: one surge pod).
    lim = limits(total, surge, unavailable)
    assert lim.surge >= 0
    assert 0 <= lim.unavailable <= total
    if total > 0:  # with nothing to run there is nothing to move (every target is 0)
        assert lim.surge + lim.unavailable >= 1
    assert lim.floor <= total <= lim.ceiling
    assert lim.floor >= 0


@given(total=totals, pct=st.integers(0, 100))
def test_percentages_round_like_a_deployment(total: int, pct: int) -> None:
    # Surge rounds up (never stuck for want of one pod), unavailable rounds down (never loses
    # more than promised): the same rounding users know from Deployments.
    lim = limits(total, f"{pct}%", f"{pct}%")
    up, down = -(-total * pct // 100), total * pct // 100
    assert lim.unavailable == down
    assert lim.surge == (up if up + down > 0 else 1)


# --- canary_replicas ------------------------------------------------------------------------------


@given(total=totals, weight=weights_)
def test_canary_replicas_is_the_closest_split_and_never_zero_for_a_real_weight(
    total: int, weight: int
) -> None:
    count = canary_replicas(total, weight)
    assert 0 <= count <= total
    if total >= 1 and 1 <= weight <= 99:
        # A weight the user asked for must reach real pods: zero canary pods would report a
        # canary that never served anything, and analysis would compare nothing.
        assert count >= 1
    exact = total * weight / 100
    lowest = 1 if total >= 1 and 1 <= weight <= 99 else 0
    best = min(abs(c - exact) for c in range(lowest, total + 1)) if total else 0
    assert abs(count - exact) == best, (count, exact)


@given(total=totals, a=weights_, b=weights_)
def test_canary_replicas_grow_with_the_weight(total: int, a: int, b: int) -> None:
    # A higher step never means fewer canary pods; otherwise a "progressing" rollout shrinks.
    lo, hi = sorted((a, b))
    assert canary_replicas(total, lo) <= canary_replicas(total, hi)


def test_canary_replicas_edges() -> None:
    assert canary_replicas(10, 0) == 0
    assert canary_replicas(10, 100) == 10
    assert canary_replicas(0, 50) == 0
    assert canary_replicas(1, 1) == 1  # never rounds a real weight to zero pods
    assert canary_replicas(10, 25) == 3  # 2.5 rounds half up
    assert canary_replicas(3, 99) == 3


# --- replica_split --------------------------------------------------------------------------------


@given(total=totals, weight=weights_, baseline=st.booleans(), data=st.data())
def test_replica_split_carries_the_weight_within_the_ceiling(
    total: int, weight: int, baseline: bool, data: st.DataObject
) -> None:
    if baseline:
        weight = min(weight, 50)  # the CRD caps setWeight at 50 with a baseline
    lim = data.draw(limit_specs(total))
    split = replica_split(total, weight, baseline=baseline, ceiling=lim.ceiling)
    size = split.canary + split.baseline + split.stable
    assert min(split.canary, split.baseline, split.stable) >= 0
    # Reachable: never above the ceiling (a target the rolling update may never reach would
    # stall the rollout), never below the total (or the floor could forbid reaching it).
    assert total <= size <= max(total, lim.ceiling)
    # The canary is the weight's pods, untouched by rounding or the ceiling.
    assert split.canary == canary_replicas(total, weight)
    if not baseline or not 0 < weight < 100:
        assert split.baseline == 0
    else:
        assert split.baseline <= split.canary
    if weight == 0:
        assert split == type(split)(canary=0, baseline=0, stable=total)
    if weight == 100:
        assert split.stable == 0
        assert split.canary == total


@given(total=st.integers(1, 60), weight=st.integers(1, 99), baseline=st.booleans())
def test_replica_split_keeps_a_stable_pod_below_100_when_the_surge_allows(
    total: int, weight: int, baseline: bool
) -> None:
    # Below 100% some traffic must still reach proven code; rounding alone must not hand every
    # pod to the canary. (Only a ceiling too tight to hold that pod may take it: documented.)
    if baseline:
        weight = min(weight, 50)
    split = replica_split(total, weight, baseline=baseline, ceiling=10**6)
    assert split.stable >= 1
    if baseline:
        assert split.baseline == split.canary  # fair comparison: same size


# --- step_towards ---------------------------------------------------------------------------------


@st.composite
def group_sets(draw: st.DrawFn) -> tuple[list[GroupCount], Limits]:
    total = draw(st.integers(0, 30))
    lim = draw(limit_specs(total))
    n = draw(st.integers(1, 4))
    groups = []
    for i in range(n):
        replicas = draw(st.integers(0, 30))
        groups.append(
            GroupCount(
                name=f"g{i}",
                replicas=replicas,
                available=draw(st.integers(0, replicas)),
                target=draw(st.integers(0, 30)),
                urgent=draw(st.booleans()) and draw(st.booleans()),
            )
        )
    return groups, lim


@given(case=group_sets(), settled=st.booleans())
@settings(max_examples=300)
def test_step_towards_moves_towards_target_within_floor_and_ceiling(
    case: tuple[list[GroupCount], Limits], settled: bool
) -> None:
    groups, lim = case
    out = step_towards(groups, lim, settled=settled)
    assert set(out) == {g.name for g in groups}
    before = sum(g.replicas for g in groups)
    after = sum(out.values())
    for g in groups:
        # Only ever towards the target, never past it (no flapping around a target).
        assert min(g.replicas, g.target) <= out[g.name] <= max(g.replicas, g.target)
        if g.urgent and g.target < g.replicas:
            assert out[g.name] == g.target  # urgent shrinks happen now, whole
        if not settled and not g.urgent:
            # The ReplicaSet's availability is stale until it observes our last scale.
            assert out[g.name] >= g.replicas
    # Ceiling: growth only ever within replicas + maxSurge.
    grew = any(out[g.name] > g.replicas for g in groups)
    assert after <= max(before, lim.ceiling)
    if grew:
        assert after <= lim.ceiling
    # Floor: a ReplicaSet scaled down removes unavailable pods first; what is left available
    # among the non-urgent groups is never pushed below the floor by this step.
    calm = [g for g in groups if not g.urgent]
    was = sum(g.available for g in calm)
    now = sum(min(g.available, out[g.name]) for g in calm)
    assert now >= min(was, lim.floor)


@given(case=group_sets(), seed=st.integers(0, 2**16))
@settings(max_examples=200)
def test_step_towards_reaches_any_target_between_floor_and_ceiling(
    case: tuple[list[GroupCount], Limits], seed: int
) -> None:
    # Liveness: repeated steps with pods becoming available (all, or some at random each time)
    # reach the target whenever the target itself lies within the bounds. Anything else would
    # be a rollout stuck until the progress deadline.
    groups, lim = case
    wanted = sum(g.target for g in groups)
    if not lim.floor <= wanted <= lim.ceiling:
        return
    rng = random.Random(seed)
    state = list(groups)
    for _ in range(500):
        if at_target(state):
            break
        out = step_towards(state, lim)
        state = [
            GroupCount(
                name=g.name,
                replicas=out[g.name],
                available=min(g.available, out[g.name]),
                target=g.target,
            )
            for g in state
        ]
        state = [
            GroupCount(
                name=g.name,
                replicas=g.replicas,
                available=g.available + rng.randint(0, g.replicas - g.available),
                target=g.target,
            )
            for g in state
        ]
    assert at_target(state), state


@given(case=group_sets())
def test_step_towards_is_a_no_op_at_target(case: tuple[list[GroupCount], Limits]) -> None:
    # At target nothing is written: a reconcile that moves nothing must not scale anything.
    groups, lim = case
    done = [
        GroupCount(name=g.name, replicas=g.target, available=g.target, target=g.target)
        for g in groups
    ]
    assert at_target(done)
    assert step_towards(done, lim) == {g.name: g.target for g in done}


def test_step_towards_respects_order_for_growth() -> None:
    # The first named group grows first within the ceiling (the stable group on abort).
    lim = limits(4, 1, 0)
    out = step_towards(
        [
            GroupCount("stable", replicas=3, available=3, target=4),
            GroupCount("canary", replicas=1, available=1, target=2),
        ],
        lim,
    )
    assert out == {"stable": 4, "canary": 1}


# --- traffic_weights ------------------------------------------------------------------------------


@given(
    shares=st.dictionaries(
        st.sampled_from(["stable", "canary", "baseline", "old"]), st.integers(0, 10000), min_size=1
    )
)
def test_traffic_weights_are_a_valid_split_as_close_as_integers_allow(
    shares: dict[str, int],
) -> None:
    out = traffic_weights(shares)
    assert set(out) == set(shares)
    assert sum(out.values()) == 100
    assert all(0 <= v <= 100 for v in out.values())
    total = sum(shares.values())
    if total == 0:
        first = next(iter(shares))
        assert out[first] == 100  # nothing is up: everything is reported on stable
        return
    for k, v in shares.items():
        exact = v * 100 / total
        assert abs(out[k] - exact) < 1, (k, out[k], exact)
        if v == 0:
            assert out[k] == 0  # a group with nothing available serves nothing


def test_traffic_weights_edges() -> None:
    assert traffic_weights({}) == {}
    assert traffic_weights({"stable": 1, "canary": 1, "baseline": 1}) == {
        "stable": 34,
        "canary": 33,
        "baseline": 33,
    }
    assert traffic_weights({"stable": 0, "canary": 0}) == {"stable": 100, "canary": 0}
