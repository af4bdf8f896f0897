"""The per-rollout gauges (phase, step, weights, replicas, cost, chaos, score), one record each.

Why a custom collector and not labelled `Gauge`s: prometheus_client keeps a child object (with
its own lock and value holder) per label combination, about 25 per rollout here, which came to
about 24 KiB per rollout — 240 MB at 10,000 rollouts for numbers that change once a pass. This
keeps one small record per rollout and builds the families when Prometheus scrapes, through the
library's documented custom-collector interface (`Collector`, `GaugeMetricFamily`). It also
lets a deleted rollout's series go with one `dict.pop`, without walking a library's internals.

The metric names, help texts and labels are the product's interface (the chart's Grafana
dashboard queries them; tests/unit/test_chart_dashboard.py checks every panel against FAMILIES).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ROLLOUT = ("namespace", "rollout")
ROLES = ("stable", "canary", "baseline", "preview", "old")
TRAFFIC_ROLES = ("stable", "canary", "baseline")
PHASES = ("Progressing", "Paused", "Healthy", "Degraded")

# name -> (help, label names): every family this collector serves.
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "herdsman_rollout_phase": (
        "1 for the rollout's current phase (Progressing, Paused, Healthy, Degraded), 0 otherwise.",
        (*ROLLOUT, "phase"),
    ),
    "herdsman_rollout_step": ("Current step (1-based; steps+1 when done).", ROLLOUT),
    "herdsman_rollout_steps": ("Number of steps in the strategy.", ROLLOUT),
    "herdsman_rollout_canary_weight": (
        "The weight the current step asks for, in percent.",
        ROLLOUT,
    ),
    "herdsman_rollout_traffic_weight": (
        "Traffic in effect per role (stable, canary, baseline), in percent.",
        (*ROLLOUT, "role"),
    ),
    "herdsman_rollout_replicas": ("Pods asked for per role.", (*ROLLOUT, "role")),
    "herdsman_release_cost_replica_seconds": (
        "Extra replica-seconds the current release consumed beyond the stable size, by role.",
        (*ROLLOUT, "role"),
    ),
    "herdsman_release_cost": (
        "Money the current release spent on extra pods (their CPU and memory requests at the"
        " operator's prices), by team (the rollout's label named by --cost-team-label).",
        (*ROLLOUT, "team", "currency"),
    ),
    "herdsman_chaos_active": (
        "Canary pods a chaos step keeps down right now (0: no fault injected).",
        ROLLOUT,
    ),
    "herdsman_chaos_http_fault_active": (
        "1 while a chaos step's httpFault route to the canary is in force (Istio), else 0.",
        ROLLOUT,
    ),
    "herdsman_analysis_score": (
        "The judge's latest score (0..100) for the rollout's current analysis run.",
        (*ROLLOUT, "run"),
    ),
}


@dataclass(slots=True)
class RolloutSeries:
    """One rollout's gauges as its last pass left them."""

    phase: str = ""
    steps: int = 0
    step: int = 0
    canary_weight: float = 0.0
    # In TRAFFIC_ROLES order.
    traffic: tuple[float, ...] = (0.0, 0.0, 0.0)
    # In ROLES order.
    replicas: tuple[int, ...] = (0, 0, 0, 0, 0)
    # role -> extra replica-seconds of the current release.
    cost: tuple[tuple[str, float], ...] = ()
    team: str = ""
    currency: str = ""
    money: float = 0.0
    chaos_pods: int = 0
    http_fault: bool = False
    # analysis run -> the judge's latest score.
    scores: dict[str, float] = field(default_factory=dict)


class RolloutGauges(Collector):
    """Holds a RolloutSeries per rollout; Prometheus' scrape builds the families from them."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], RolloutSeries] = {}
        # Passes write on the event loop while the /metrics server reads on its own thread.
        self._lock = threading.Lock()

    def put(self, namespace: str, name: str, series: RolloutSeries) -> None:
        with self._lock:
            old = self._series.get((namespace, name))
            if old is not None and not series.scores:
                series.scores = old.scores
            self._series[(namespace, name)] = series

    def score(self, namespace: str, name: str, run: str, value: float) -> None:
        with self._lock:
            series = self._series.setdefault((namespace, name), RolloutSeries())
            series.scores[run] = value

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._series.pop((namespace, name), None)

    def describe(self) -> Iterable[Metric]:
        return _families().values()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows = [(key, series, dict(series.scores)) for key, series in self._series.items()]
        out = _families()
        for (ns, name), s, scores in rows:
            key = [ns, name]
            for phase in PHASES:
                out["herdsman_rollout_phase"].add_metric(
                    [*key, phase], 1 if s.phase == phase else 0
                )
            out["herdsman_rollout_steps"].add_metric(key, s.steps)
            out["herdsman_rollout_step"].add_metric(key, s.step)
            out["herdsman_rollout_canary_weight"].add_metric(key, s.canary_weight)
            for role, weight in zip(TRAFFIC_ROLES, s.traffic, strict=True):
                out["herdsman_rollout_traffic_weight"].add_metric([*key, role], weight)
            for role, count in zip(ROLES, s.replicas, strict=True):
                out["herdsman_rollout_replicas"].add_metric([*key, role], count)
            for role, seconds in s.cost:
                out["herdsman_release_cost_replica_seconds"].add_metric([*key, role], seconds)
            if s.currency:
                out["herdsman_release_cost"].add_metric([*key, s.team, s.currency], s.money)
            out["herdsman_chaos_active"].add_metric(key, s.chaos_pods)
            out["herdsman_chaos_http_fault_active"].add_metric(key, 1 if s.http_fault else 0)
            for run, value in scores.items():
                out["herdsman_analysis_score"].add_metric([*key, run], value)
        yield from out.values()


def _families() -> dict[str, GaugeMetricFamily]:
    """Every family this collector serves, empty."""
    return {n: GaugeMetricFamily(n, h, labels=list(ls)) for n, (h, ls) in FAMILIES.items()}
