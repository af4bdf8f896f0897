"""The operator's Prometheus metrics: what users graph and alert on.

Every name here is part of the product's interface: the Grafana dashboard in the chart queries
them, and a test checks each panel's metric against this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from herdsman.api.analysis_run import AnalysisRunStatus
from herdsman.api.rollout import Rollout
from herdsman.cluster.retry import RetryHooks
from herdsman.engine import cost
from herdsman.engine.world import Decision
from herdsman.rollout_counters import RolloutCounters
from herdsman.rollout_gauges import PHASES as PHASES  # re-exported: part of this interface
from herdsman.rollout_gauges import ROLES, TRAFFIC_ROLES, RolloutGauges, RolloutSeries

# Counters and histograms without their `_created` series: no panel or alert reads them, and at
# 10,000 rollouts they were a fifth of a 22 MB scrape (one per labelled child).
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

REGISTRY = CollectorRegistry()
ROLLOUT = ["namespace", "rollout"]

# Phase, step, weights, replicas, cost, chaos and score of every rollout (rollout_gauges.py).
rollout_gauges = RolloutGauges()
REGISTRY.register(rollout_gauges)
# Transitions, releases, chaos faults, measurements, runs and step durations of every rollout.
rollout_counters = RolloutCounters()
REGISTRY.register(rollout_counters)

# The Rollout label that names its team on cost metrics (set once at startup).
TEAM_LABEL = "team"
reconcile_duration = Histogram(
    "herdsman_reconcile_duration_seconds",
    "Time one reconcile pass takes, by result (ok, conflict, error).",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
    registry=REGISTRY,
)
queue_wait = Histogram(
    "herdsman_workqueue_wait_seconds",
    "Time a key waited in a workqueue (rollouts, experiments) for a worker, by what woke it"
    " (spec: its spec changed, served first; status: anything else). Long waits while every"
    " worker is busy: raise --workers, if the API server has room (their passes may be waiting"
    " on it).",
    ["queue", "wake"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
queue_depth = Gauge(
    "herdsman_workqueue_depth",
    "Keys waiting for a worker, by workqueue.",
    ["queue"],
    registry=REGISTRY,
)
queue_busy = Gauge(
    "herdsman_workqueue_busy_workers",
    "Passes in flight, by workqueue (at most --workers).",
    ["queue"],
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
    "Kubernetes API calls the operator sent (Kopf's watches not included), by verb and resource"
    " (with its subresource: rollouts/status): at rest this stays flat, since every read comes"
    " from the watch-fed cache.",
    ["verb", "resource"],
    registry=REGISTRY,
)
events_dropped = Counter(
    "herdsman_events_dropped",
    "Kubernetes Events not sent because their queue was full (the API server could not keep"
    " up); the Rollout's status still records every transition.",
    registry=REGISTRY,
)
rollouts_cached = Gauge(
    "herdsman_rollouts_cached",
    "Rollouts this replica holds in its watch-fed cache. Sharded, only those of the shards it"
    " holds (and any not yet labelled with their shard): the figure that should fall as"
    " replicas are added.",
    registry=REGISTRY,
)
server_groups_cached = Gauge(
    "herdsman_server_groups_cached",
    "Server groups (ReplicaSets) of Rollouts this replica holds in its watch-fed cache. Sharded,"
    " only those of the shards it holds (and any created before sharding or under another shard"
    " count).",
    registry=REGISTRY,
)
watch_ends = Counter(
    "herdsman_watch_ends",
    "Watch requests of the sharded views that ended, by resource and why: timeout (the"
    " server's, as asked: about one per watch every 5 minutes), early (the server closed it"
    " sooner: it cuts a watcher whose events it cannot deliver fast enough), expired (410, so"
    " listed again) or failed (retried). Early or expired ends that climb mean the views'"
    " events arrive late.",
    ["resource", "reason"],
    registry=REGISTRY,
)
events_queued = Gauge(
    "herdsman_events_queued",
    "Kubernetes Events announced and waiting to be sent: a backlog after a burst of releases"
    " drains as the API server has room.",
    registry=REGISTRY,
)
echoes_skipped = Counter(
    "herdsman_echoes_skipped",
    "Watch events that only brought back one of the operator's own status writes, from a pass"
    " that found nothing left for the next one: the pass such an event would queue is not run"
    " (it would decide exactly what the writing pass did).",
    registry=REGISTRY,
)
reads_cached = Counter(
    "herdsman_api_reads_cached",
    "GETs by name of Services, router objects and analysis templates answered from the"
    " operator's watch-fed stores instead of the API server, by resource.",
    ["resource"],
    registry=REGISTRY,
)

reads_held = Gauge(
    "herdsman_reads_objects_held",
    "Objects the watch-fed stores of Services, router objects and analysis templates hold.",
    registry=REGISTRY,
)

api_throttled = Counter(
    "herdsman_api_throttled_seconds",
    "Seconds Kubernetes API calls waited for the client-side rate limit (--kube-qps,"
    " --kube-burst): when this climbs steadily, raise them, if the API server has room.",
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


def track_queue(
    name: str, pending: Callable[[], int], running: Callable[[], int]
) -> Callable[[bool, float], None]:
    """Export a workqueue's depth and busy workers (read at each scrape, nothing kept), and
    return what records its keys' waits."""
    queue_depth.labels(name).set_function(pending)
    queue_busy.labels(name).set_function(running)
    spec, status = queue_wait.labels(name, "spec"), queue_wait.labels(name, "status")

    def waited(urgent: bool, seconds: float) -> None:
        (spec if urgent else status).observe(seconds)

    return waited


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


def api_request(verb: str, resource: str) -> None:
    api_requests.labels(verb, resource).inc()


def read_cached(resource: str) -> None:
    reads_cached.labels(resource).inc()


def event_dropped() -> None:
    events_dropped.inc()


def api_throttle(seconds: float) -> None:
    api_throttled.inc(seconds)


def api_error(verb: str, code: int) -> None:
    api_errors.labels(verb, str(code)).inc()


def record_pass(rollout: Rollout, decision: Decision, now: datetime) -> None:
    ns, name = rollout.metadata.namespace or "default", rollout.metadata.name
    st, old = decision.status, rollout.status
    steps = rollout.spec.strategy.canary.steps if rollout.spec.strategy.canary else []
    pods = dict.fromkeys(ROLES, 0)
    for row in st.server_groups:
        role = "stable" if row.role == "active" else row.role
        pods[role] = pods.get(role, 0) + row.replicas
    live = cost.live(st.cost, st.server_groups, rollout.spec.replicas, now)
    injected = st.chaos is not None and st.chaos.phase == "Injected"
    rollout_gauges.put(
        ns,
        name,
        RolloutSeries(
            phase=st.phase or "",
            steps=len(steps),
            step=(st.current_step_index or 0) + 1 if steps else 0,
            canary_weight=st.canary_weight,
            traffic=tuple(float(getattr(st.weights, role)) for role in TRAFFIC_ROLES),
            replicas=tuple(pods[role] for role in ROLES),
            cost=tuple(live.items()),
            team=(rollout.metadata.labels or {}).get(TEAM_LABEL, ""),
            currency=cost.PRICES.currency,
            money=cost.live_amount(st.cost, live, rollout.spec.template),
            chaos_pods=st.chaos.pods_killed if st.chaos and injected else 0,
            http_fault=injected and st.chaos is not None and st.chaos.action == "httpFault",
        ),
    )
    for t in decision.transitions:
        rollout_counters.inc("herdsman_rollout_transitions", ns, name, t.reason)
        if t.reason in ("ChaosInjected", "ChaosRemoved"):
            rollout_counters.inc("herdsman_chaos_faults", ns, name, t.reason)
        if t.reason in _RELEASE_ENDS:
            rollout_counters.inc("herdsman_releases", ns, name, _RELEASE_ENDS[t.reason])
    left = old.current_step_index
    if left is not None and old.step_started_at is not None and left < len(steps):
        moved = st.current_step_index != left or st.current_revision != old.current_revision
        if moved:
            seconds = max(0.0, (now - old.step_started_at).total_seconds())
            rollout_counters.observe_step(ns, name, steps[left].kind, seconds)


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
                    rollout_counters.inc(
                        "herdsman_analysis_measurements", ns, name, result.name, phase, amount=added
                    )
        if (
            status.phase in ("Successful", "Failed", "Error", "Inconclusive")
            and old.get("phase") != status.phase
        ):
            rollout_counters.inc("herdsman_analysis_runs", ns, name, status.phase)
        if status.score is not None and status.score.score is not None:
            rollout_gauges.score(ns, name, run, status.score.score)


def forget(namespace: str, name: str) -> None:
    """A deleted rollout (or one another replica now owns) leaves no stale series behind."""
    rollout_gauges.forget(namespace, name)
    rollout_counters.forget(namespace, name)
