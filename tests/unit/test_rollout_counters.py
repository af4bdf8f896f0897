"""The per-rollout counters and step histogram (rollout_counters.py) expose exactly what
prometheus_client's own Counter and Histogram did for the same events, and a forgotten rollout
leaves no series."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from herdsman.rollout_counters import COUNTERS, STEP_BUCKETS, STEP_HELP, RolloutCounters

pytestmark = pytest.mark.unit

ROLLOUTS = [("shop", "checkout"), ("shop", "cart"), ("pay", "checkout")]
STEPS = [("setWeight", 0.4), ("pause", 5.0), ("pause", 5.0001), ("analysis", 90.0), ("pause", 1e6)]


def exposition(registry: CollectorRegistry) -> list[str]:
    return sorted(
        line
        for line in generate_latest(registry).decode().splitlines()
        if line and not line.startswith("#") and "_created" not in line
    )


def test_the_same_events_read_exactly_as_the_library_s_own_metrics() -> None:
    ours = CollectorRegistry()
    counters = RolloutCounters()
    ours.register(counters)
    theirs = CollectorRegistry()
    library = {
        name: Counter(name, text, ["namespace", "rollout", *labels], registry=theirs)
        for name, (text, labels) in COUNTERS.items()
    }
    histogram = Histogram(
        "herdsman_step_duration_seconds",
        STEP_HELP,
        ["namespace", "rollout", "kind"],
        buckets=STEP_BUCKETS,
        registry=theirs,
    )
    for i, (ns, name) in enumerate(ROLLOUTS):
        for _ in range(i + 1):
            counters.inc("herdsman_rollout_transitions", ns, name, "StepStarted")
            library["herdsman_rollout_transitions"].labels(ns, name, "StepStarted").inc()
        counters.inc("herdsman_analysis_measurements", ns, name, "errors", "Failed", amount=3)
        library["herdsman_analysis_measurements"].labels(ns, name, "errors", "Failed").inc(3)
        counters.inc("herdsman_releases", ns, name, "completed")
        library["herdsman_releases"].labels(ns, name, "completed").inc()
        for kind, seconds in STEPS[i:]:
            counters.observe_step(ns, name, kind, seconds)
            histogram.labels(ns, name, kind).observe(seconds)
    assert exposition(ours) == exposition(theirs)
    assert any('le="5.0"' in line for line in exposition(ours))


def test_a_forgotten_rollout_leaves_no_series_and_others_keep_theirs() -> None:
    registry = CollectorRegistry()
    counters = RolloutCounters()
    registry.register(counters)
    for ns, name in ROLLOUTS:
        counters.inc("herdsman_rollout_transitions", ns, name, "RolloutHealthy")
        counters.observe_step(ns, name, "pause", 5)
    counters.forget("shop", "checkout")
    lines = exposition(registry)
    assert not [line for line in lines if 'namespace="shop",rollout="checkout"' in line]
    assert [line for line in lines if 'rollout="cart"' in line]
    assert [line for line in lines if 'namespace="pay",rollout="checkout"' in line]


def test_a_counter_it_does_not_serve_is_refused() -> None:
    counters = RolloutCounters()
    with pytest.raises(ValueError, match="not a counter"):
        counters.inc("herdsman_unknown", "shop", "checkout", "x")
    with pytest.raises(ValueError, match="not a counter"):
        counters.inc("herdsman_releases", "shop", "checkout")  # its `result` label is missing
