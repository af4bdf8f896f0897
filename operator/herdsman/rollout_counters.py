"""The per-rollout counters (transitions, releases, chaos faults, measurements, runs) and the
step-duration histogram, one small record each.

Why a custom collector, as rollout_gauges.py does for the gauges: prometheus_client keeps a
child per label combination, and a histogram child holds a value object with its own lock per
bucket. One release of a two-step canary left about 13 KiB of them per rollout (measured with
tracemalloc at 300 rollouts: the step histogram's children alone were 6.6 KiB), which is
13 MB at 1,000 rollouts and never given back, since a counter's children outlive their
rollout. Here a rollout is one dict of plain numbers, and `forget` drops it with its gauges.

A forgotten rollout's counters restart from zero if it comes back (its shard moved back
here): Prometheus' `rate` and `increase` read that as a counter reset, as they do a restart.
The names, help texts and labels are the product's interface (the chart's dashboard queries
them; tests/unit/test_chart_dashboard.py checks every panel against the registry).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

ROLLOUT = ("namespace", "rollout")
STEP_DURATION = "herdsman_step_duration_seconds"
STEP_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)

# name (without _total) -> (help, the labels after namespace and rollout).
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "herdsman_rollout_transitions": (
        "State transitions, by reason (the same vocabulary as the Events).",
        ("reason",),
    ),
    "herdsman_releases": (
        "Releases that ended, by result: completed, aborted, rolled_back.",
        ("result",),
    ),
    "herdsman_chaos_faults": (
        "Chaos faults injected into canaries and removed, by event (ChaosInjected, ChaosRemoved).",
        ("event",),
    ),
    "herdsman_analysis_measurements": (
        "Measurements taken, by metric and phase (Successful, Failed, Inconclusive, Error).",
        ("metric", "phase"),
    ),
    "herdsman_analysis_runs": ("Analysis runs that finished, by phase.", ("phase",)),
}
STEP_HELP = "Time spent in each step, by kind (setWeight, pause, analysis...)."


@dataclass(slots=True)
class _Row:
    """One rollout's numbers."""

    # (counter name, its own labels) -> count.
    counts: dict[tuple[str, tuple[str, ...]], float] = field(default_factory=dict)
    # step kind -> count per bucket (not cumulative; the last one above every bound), then sum.
    steps: dict[str, list[float]] = field(default_factory=dict)


class RolloutCounters(Collector):
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], _Row] = {}
        # Passes write on the event loop while the /metrics server reads on its own thread.
        self._lock = threading.Lock()

    def inc(
        self, counter: str, namespace: str, name: str, *labels: str, amount: float = 1.0
    ) -> None:
        """Add `amount` to the rollout's `counter` with `labels` (after namespace, rollout)."""
        if counter not in COUNTERS or len(labels) != len(COUNTERS[counter][1]):
            raise ValueError(f"{counter}{labels}: not a counter of this collector")
        with self._lock:
            counts = self._rows.setdefault((namespace, name), _Row()).counts
            counts[(counter, labels)] = counts.get((counter, labels), 0.0) + amount

    def observe_step(self, namespace: str, name: str, kind: str, seconds: float) -> None:
        """One step of `kind` that lasted `seconds`."""
        with self._lock:
            steps = self._rows.setdefault((namespace, name), _Row()).steps
            cell = steps.get(kind)
            if cell is None:
                cell = steps[kind] = [0.0] * (len(STEP_BUCKETS) + 2)
            cell[bisect.bisect_left(STEP_BUCKETS, seconds)] += 1  # `le` bounds are inclusive
            cell[-1] += seconds

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._rows.pop((namespace, name), None)

    def describe(self) -> Iterable[Metric]:
        counters, histogram = _families()
        return [*counters.values(), histogram]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows = [
                (key, dict(row.counts), {kind: list(cell) for kind, cell in row.steps.items()})
                for key, row in self._rows.items()
            ]
        counters, histogram = _families()
        # The library's own formatting of `le`, so the series read as its Histogram's did.
        les = [floatToGoString(b) for b in STEP_BUCKETS] + ["+Inf"]  # type: ignore[no-untyped-call]
        for (ns, name), counts, steps in rows:
            for (family, labels), value in counts.items():
                counters[family].add_metric([ns, name, *labels], value)
            for kind, cell in steps.items():
                running, buckets = 0.0, []
                for le, count in zip(les, cell[:-1], strict=True):
                    running += count
                    buckets.append((le, running))
                histogram.add_metric([ns, name, kind], buckets, sum_value=cell[-1])
        yield from counters.values()
        yield histogram


def _families() -> tuple[dict[str, CounterMetricFamily], HistogramMetricFamily]:
    """Every family this collector serves, empty."""
    counters = {
        name: CounterMetricFamily(name, text, labels=[*ROLLOUT, *labels])
        for name, (text, labels) in COUNTERS.items()
    }
    histogram = HistogramMetricFamily(STEP_DURATION, STEP_HELP, labels=[*ROLLOUT, "kind"])
    return counters, histogram
