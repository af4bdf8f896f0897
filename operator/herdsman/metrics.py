"""The operator's Prometheus metrics: what users graph and alert on.

Every name here is part of the product's interface: the Grafana dashboard in the chart queries
them, and a test checks each panel's metric against this registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from herdsman.api.analysis import AnalysisRunStatus
from herdsman.api.rollout import Rollout
from herdsman.cluster.retry import RetryHooks
from herdsman.engine import cost
from herdsman.engine.world import Decision

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
chaos_active = Gauge(
    "herdsman_chaos_active",
    "Canary pods a chaos step keeps down right now (0: no fault injected).",
    ROLLOUT,
    registry=REGISTRY,
)
chaos_http_fault = Gauge(
    "herdsman_chaos_http_fault_active",
    "1 while a chaos step's httpFault route to the canary is in force (Istio), else 0.",
    ROLLOUT,
    registry=REGISTRY,
)
chaos_faults = Counter(
    "herdsman_chaos_faults",
    "Chaos faults injected into canaries and removed, by event (ChaosInjected, ChaosRemoved).",
    [*ROLLOUT, "event"],
    registry=REGISTRY,
)
release_cost_money = Gauge(
    "herdsman_release_cost",
    "Money the current release spent on extra pods (their CPU and memory requests at the"
    " operator's prices), by team (the rollout's label named by --cost-team-label).",
    [*ROLLOUT, "team", "currency"],
    registry=REGISTRY,
)
# The Rollout label that names its team on cost metrics (set once at startup).
TEAM_LABEL = "team"
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
api_requests = Counter(
    "herdsman_api_requests",
    "Kubernetes API calls the operator sent (Kopf's watches not included), by verb: at rest"
    " this stays flat, since every read comes from the watch-fed cache.",
    ["verb"],
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


# --- recording --------------------------------------------------------------------------------
# Called by the doing layer after a pass whose status write succeeded, so each transition is
# counted exactly once, like its Event and its log line.

_RELEASE_ENDS = {
    "RolloutCompleted": "completed",
    "RolloutAborted": "aborted",
    "RollbackCompleted": "rolled_back",
}


def retry_hooks(call: str) -> RetryHooks:
    return RetryHooks(
        on_retry=lambda _event: retries.labels(call).inc(),
        on_expired=lambda _error: deadline_expiries.labels(call).inc(),
    )


def api_request(verb: str) -> None:
    api_requests.labels(verb).inc()


def api_error(verb: str, code: int) -> None:
    api_errors.labels(verb, str(code)).inc()


def record_pass(rollout: Rollout, decision: Decision, now: datetime) -> None:
    ns, name = rollout.metadata.namespace or "default", rollout.metadata.name
    st, old = decision.status, rollout.status
    for phase in PHASES:
        rollout_phase.labels(ns, name, phase).set(1 if st.phase == phase else 0)
    steps = rollout.spec.strategy.canary.steps if rollout.spec.strategy.canary else []
    rollout_steps.labels(ns, name).set(len(steps))
    rollout_step.labels(ns, name).set((st.current_step_index or 0) + 1 if steps else 0)
    rollout_canary_weight.labels(ns, name).set(st.canary_weight)
    for role in ("stable", "canary", "baseline"):
        rollout_traffic_weight.labels(ns, name, role).set(getattr(st.weights, role))
    pods = dict.fromkeys(ROLES, 0)
    for row in st.server_groups:
        role = "stable" if row.role == "active" else row.role
        pods[role] = pods.get(role, 0) + row.replicas
    for role, count in pods.items():
        rollout_replicas.labels(ns, name, role).set(count)
    live = cost.live(st.cost, st.server_groups, rollout.spec.replicas, now)
    for role, seconds in live.items():
        release_cost.labels(ns, name, role).set(seconds)
    team = (rollout.metadata.labels or {}).get(TEAM_LABEL, "")
    release_cost_money.labels(ns, name, team, cost.PRICES.currency).set(
        cost.live_amount(st.cost, live, rollout.spec.template)
    )
    injected = st.chaos is not None and st.chaos.phase == "Injected"
    chaos_active.labels(ns, name).set(st.chaos.pods_killed if st.chaos and injected else 0)
    http = injected and st.chaos is not None and st.chaos.action == "httpFault"
    chaos_http_fault.labels(ns, name).set(1 if http else 0)
    for t in decision.transitions:
        transitions.labels(ns, name, t.reason).inc()
        if t.reason in ("ChaosInjected", "ChaosRemoved"):
            chaos_faults.labels(ns, name, t.reason).inc()
        if t.reason in _RELEASE_ENDS:
            releases.labels(ns, name, _RELEASE_ENDS[t.reason]).inc()
    left = old.current_step_index
    if left is not None and old.step_started_at is not None and left < len(steps):
        moved = st.current_step_index != left or st.current_revision != old.current_revision
        if moved:
            seconds = max(0.0, (now - old.step_started_at).total_seconds())
            step_duration.labels(ns, name, steps[left].kind).observe(seconds)


def record_runs(
    rollout: Rollout, updates: Mapping[str, AnalysisRunStatus], before: Mapping[str, Any]
) -> None:
    ns, name = rollout.metadata.namespace or "default", rollout.metadata.name
    for run, status in updates.items():
        old = (before.get(run) or {}).get("status") or {}
        seen = {m.get("name"): m for m in old.get("metricResults") or []}
        for result in status.metric_results:
            prior = seen.get(result.name) or {}
            for phase, field_name in (
                ("Successful", "successful"),
                ("Failed", "failed"),
                ("Inconclusive", "inconclusive"),
                ("Error", "error"),
            ):
                added = getattr(result, field_name) - int(prior.get(field_name, 0) or 0)
                if added > 0:
                    analysis_measurements.labels(ns, name, result.name, phase).inc(added)
        if (
            status.phase in ("Successful", "Failed", "Error", "Inconclusive")
            and old.get("phase") != status.phase
        ):
            analysis_runs.labels(ns, name, status.phase).inc()
        if status.score is not None and status.score.score is not None:
            analysis_score.labels(ns, name, run).set(status.score.score)


def forget(namespace: str, name: str) -> None:
    """A deleted rollout leaves no stale series behind."""
    for family in (
        rollout_phase,
        rollout_step,
        rollout_steps,
        rollout_canary_weight,
        rollout_traffic_weight,
        rollout_replicas,
        release_cost,
        release_cost_money,
        chaos_active,
        chaos_http_fault,
        analysis_score,
    ):
        for labels in list(family._metrics):  # prometheus_client keeps children by label tuple
            if labels[:2] == (namespace, name):
                family.remove(*labels)
