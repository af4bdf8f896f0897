"""The operator's Prometheus metrics: what users graph and alert on.

Every name here is part of the product's interface: the Grafana dashboard in the chart queries
them, and a test checks each panel's metric against this registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
ROLLOUT = ["namespace", "rollout"]

rollout_phase = Gauge(
    "herdsman_rollout_phase",
    "1 for the rollout's current phase (Progressing, Paused, Healthy, Degraded), 0 otherwise.",
    [*ROLLOUT, "phase"],
    registry=REGISTRY,
)
rollout_step = Gauge(
    "herdsman_rollout_step",
    "Current step (1-based; steps+1 when done).",
    ROLLOUT,
    registry=REGISTRY,
)
rollout_steps = Gauge(
    "herdsman_rollout_steps", "Number of steps in the strategy.", ROLLOUT, registry=REGISTRY
)
rollout_canary_weight = Gauge(
    "herdsman_rollout_canary_weight",
    "The weight the current step asks for, in percent.",
    ROLLOUT,
    registry=REGISTRY,
)
rollout_traffic_weight = Gauge(
    "herdsman_rollout_traffic_weight",
    "Traffic in effect per role (stable, canary, baseline), in percent.",
    [*ROLLOUT, "role"],
    registry=REGISTRY,
)
rollout_replicas = Gauge(
    "herdsman_rollout_replicas", "Pods asked for per role.", [*ROLLOUT, "role"], registry=REGISTRY
)
transitions = Counter(
    "herdsman_rollout_transitions",
    "State transitions, by reason (the same vocabulary as the Events).",
    [*ROLLOUT, "reason"],
    registry=REGISTRY,
)
releases = Counter(
    "herdsman_releases",
    "Releases that ended, by result: completed, aborted, rolled_back.",
    [*ROLLOUT, "result"],
    registry=REGISTRY,
)
step_duration = Histogram(
    "herdsman_step_duration_seconds",
    "Time spent in each step, by kind (setWeight, pause, analysis...).",
    [*ROLLOUT, "kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
    registry=REGISTRY,
)
analysis_measurements = Counter(
    "herdsman_analysis_measurements",
    "Measurements taken, by metric and phase (Successful, Failed, Inconclusive, Error).",
    [*ROLLOUT, "metric", "phase"],
    registry=REGISTRY,
)
analysis_runs = Counter(
    "herdsman_analysis_runs",
    "Analysis runs that finished, by phase.",
    [*ROLLOUT, "phase"],
    registry=REGISTRY,
)
analysis_score = Gauge(
    "herdsman_analysis_score",
    "The judge's latest score (0..100) for the rollout's current analysis run.",
    [*ROLLOUT, "run"],
    registry=REGISTRY,
)
release_cost = Gauge(
    "herdsman_release_cost_replica_seconds",
    "Extra replica-seconds the current release consumed beyond the stable size, by role.",
    [*ROLLOUT, "role"],
    registry=REGISTRY,
)
reconcile_duration = Histogram(
    "herdsman_reconcile_duration_seconds",
    "Time one reconcile pass takes, by result (ok, conflict, error).",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
    registry=REGISTRY,
)
api_errors = Counter(
    "herdsman_api_errors",
    "Kubernetes API calls that failed, by verb and HTTP status.",
    ["verb", "code"],
    registry=REGISTRY,
)
retries = Counter(
    "herdsman_retries",
    "Outbound calls retried, by call kind (kubernetes, prometheus, web).",
    ["call"],
    registry=REGISTRY,
)
deadline_expiries = Counter(
    "herdsman_deadline_expiries",
    "Outbound calls that ran out of their deadline, by call kind.",
    ["call"],
    registry=REGISTRY,
)

ROLES = ("stable", "canary", "baseline", "preview", "old")
PHASES = ("Progressing", "Paused", "Healthy", "Degraded")


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose /metrics on `port` (0: not at all)."""
    if port:
        start_http_server(port, addr=addr, registry=REGISTRY)


def metric_names() -> set[str]:
    """Every sample name this registry can produce (counters' _total, histograms' _bucket...)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
    return names
