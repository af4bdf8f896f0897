"""`herdsman simulate`: a synthetic service whose traffic follows the operator's weights.

Made for the demo and the end-to-end tests, and for anyone who wants to watch the judge work
without a real service: it sends requests to server groups in the shares traffic would reach
them, behaves per version as told (latency, errors), and exports the results for Prometheus.
"""

from herdsman.simulate.traffic import (
    BUCKETS,
    HEALTHY,
    Behaviour,
    Fault,
    FaultRoute,
    GroupInfo,
    Reader,
    Route,
    TrafficSimulator,
    error_rate_query,
    mean_latency_query,
    replica_ratio,
    rollout_weights,
)

__all__ = [
    "BUCKETS",
    "HEALTHY",
    "Behaviour",
    "Fault",
    "FaultRoute",
    "GroupInfo",
    "Reader",
    "Route",
    "TrafficSimulator",
    "error_rate_query",
    "mean_latency_query",
    "replica_ratio",
    "rollout_weights",
]
