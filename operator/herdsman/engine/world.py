"""What the engine sees and what it asks for: plain, immutable values, no clients.

`World` is the observed cluster around one Rollout; `Decision` is the desired cluster plus the
new status and the transitions to announce. The doing layer (herdsman.cluster) builds the first
and applies the second; everything between is a pure function of (spec, world, now).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from herdsman.api.analysis_ref import RolloutAnalysis
from herdsman.api.chaos import HttpFault
from herdsman.api.experiment_step import RolloutExperimentStep
from herdsman.api.rollout import RolloutStatus

GroupKind = Literal["release", "baseline"]


@dataclass(frozen=True)
class ServerGroup:
    """One observed ReplicaSet we own."""

    name: str
    revision: int
    pod_hash: str
    kind: GroupKind = "release"
    replicas: int = 0  # spec.replicas: what we asked for
    ready: int = 0
    available: int = 0
    # The ReplicaSet controller has seen our last scale (status.observedGeneration caught up).
    settled: bool = True
    created_at: datetime | None = None

    @property
    def unavailable(self) -> int:
        return max(0, self.replicas - self.available)


@dataclass(frozen=True)
class ServiceState:
    name: str
    exists: bool
    selector: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisRunView:
    """The parts of an AnalysisRun the rollout engine decides on."""

    name: str
    kind: Literal["step", "background", "prePromotion", "postPromotion"]
    revision: int
    step_index: int | None
    attempt: int
    phase: str  # Pending, Running, Successful, Failed, Error, Inconclusive
    message: str = ""
    terminated: bool = False

    @property
    def done(self) -> bool:
        return self.phase in ("Successful", "Failed", "Error", "Inconclusive")

    @property
    def failed(self) -> bool:
        """A verdict against the release. Error is not one: it means we could not measure,
        and no data is never a pass — nor a reason to roll back on its own."""
        return self.phase == "Failed"

    @property
    def undecided(self) -> bool:
        return self.phase in ("Inconclusive", "Error")


@dataclass(frozen=True)
class ExperimentView:
    """An Experiment a Rollout's experiment step started (engine/canary/experiment.py)."""

    name: str
    phase: str  # Pending, Running, Successful, Failed, Error, Inconclusive
    message: str = ""
    terminating: bool = False

    @property
    def done(self) -> bool:
        return self.phase in ("Successful", "Failed", "Error", "Inconclusive")


@dataclass(frozen=True)
class RouterState:
    """What the traffic router currently holds (None in replica-ratio mode).

    `available` is False when the router's kind is not installed or the object (or a named
    route in it) the spec names does not exist; `message` then says which, field path first.
    `canary_weight` is the canary's share in percent when the object holds one exactly (every
    managed route agrees and the weights sum to 100), None otherwise; `baseline_weight` the
    same for the baseline Service (0 when the rollout has none). `routes` names the managed
    header and mirror routes the object carries now; `http_fault` whether it carries a chaos
    step's fault route.
    """

    available: bool = True
    message: str = ""
    canary_weight: int | None = None
    baseline_weight: int | None = 0
    routes: frozenset[str] = frozenset()
    # Whether the object carries a chaos step's fault route to the canary (Istio).
    http_fault: bool = False

    def holds(self, target: TrafficTarget) -> bool:
        """Whether the engine would see nothing change if `target` were written now: every
        field it reads back (the weights, the route names, the fault route) already says what
        `target` asks. The routers must report exactly these once they hold a target, or no
        step would ever be seen done (engine/canary/steps.py)."""
        return (
            self.available
            and self.canary_weight == target.canary_weight
            and self.baseline_weight == target.baseline_weight
            and self.routes == target.route_names
            and self.http_fault == (target.http_fault is not None)
        )


@dataclass(frozen=True)
class PodView:
    name: str
    group: str
    created_at: datetime
    ready: bool


@dataclass(frozen=True)
class World:
    groups: tuple[ServerGroup, ...] = ()
    services: dict[str, ServiceState] = field(default_factory=dict)
    analysis_runs: tuple[AnalysisRunView, ...] = ()
    # Template names that were referenced but not found (namespaced or cluster-scoped).
    missing_templates: frozenset[str] = frozenset()
    # Referenced analyses that cannot be built (an undeclared or missing argument...).
    analysis_problems: tuple[str, ...] = ()
    # Notification subscriptions that can never be delivered (unknown service or trigger).
    notification_problems: tuple[str, ...] = ()
    # What stops spec.workloadRef from giving a template (a missing Deployment...).
    workload_problems: tuple[str, ...] = ()
    router: RouterState | None = None
    # Pods are only observed while a restart is pending.
    pods: tuple[PodView, ...] = ()
    # Experiments owned by the rollout (observed only when a step runs one).
    experiments: tuple[ExperimentView, ...] = ()

    def experiment(self, name: str) -> ExperimentView | None:
        return next((e for e in self.experiments if e.name == name), None)

    def group(self, name: str | None) -> ServerGroup | None:
        if not name:
            return None
        return next((g for g in self.groups if g.name == name), None)

    def release(self, pod_hash: str) -> ServerGroup | None:
        return next(
            (g for g in self.groups if g.pod_hash == pod_hash and g.kind == "release"), None
        )

    def run(self, name: str) -> AnalysisRunView | None:
        return next((r for r in self.analysis_runs if r.name == name), None)


# --- the decision -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewGroup:
    name: str
    revision: int
    pod_hash: str
    kind: GroupKind
    replicas: int
    template: dict[str, Any]


@dataclass(frozen=True)
class NewAnalysisRun:
    name: str
    kind: Literal["step", "background", "prePromotion", "postPromotion"]
    revision: int
    step_index: int | None
    attempt: int
    analysis: RolloutAnalysis
    # Server groups the run measures, by role: canary, baseline, stable.
    groups: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class NewExperiment:
    """An experiment step's Experiment; its pod templates are resolved by the doing layer
    (the stable one from the stable group's recorded template)."""

    name: str
    revision: int
    step_index: int
    attempt: int
    step: RolloutExperimentStep
    stable_group: str
    stable_pod_hash: str
    canary_pod_hash: str


@dataclass(frozen=True)
class TrafficTarget:
    """Router weights; ignored in replica-ratio mode where replicas carry the weight."""

    canary_weight: int
    canary_group: str | None
    stable_group: str
    header_routes: tuple[Any, ...] = ()
    mirror_routes: tuple[Any, ...] = ()
    # The baseline Service's share (baseline: true with a router): the canary's weight while
    # the baseline group has pods to take it, else 0. The stable Service gets the rest.
    baseline_weight: int = 0
    # A chaos step's httpFault in force (status.chaos, headers resolved): the Istio router
    # carries it on a route of its own to the canary; None removes that route.
    http_fault: HttpFault | None = None

    @property
    def route_names(self) -> frozenset[str]:
        return frozenset(r.name for r in (*self.header_routes, *self.mirror_routes))


@dataclass(frozen=True)
class Transition:
    """One state change worth an Event and exactly one log line."""

    reason: str  # CamelCase, doubles as the Event reason
    message: str
    warning: bool = False


@dataclass
class Desired:
    create_groups: list[NewGroup] = field(default_factory=list)
    scale: dict[str, int] = field(default_factory=dict)
    delete_groups: list[str] = field(default_factory=list)
    # service name -> server group it should select
    selectors: dict[str, str] = field(default_factory=dict)
    traffic: TrafficTarget | None = None
    # Traffic goes back to stable before any other write (abort, failed analysis).
    traffic_first: bool = False
    create_runs: list[NewAnalysisRun] = field(default_factory=list)
    terminate_runs: list[str] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    create_experiments: list[NewExperiment] = field(default_factory=list)
    terminate_experiments: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.create_groups
            or self.scale
            or self.delete_groups
            or self.selectors
            or self.traffic
            or self.create_runs
            or self.terminate_runs
            or self.delete_pods
            or self.create_experiments
            or self.terminate_experiments
        )

    def writes_nothing(self, router: RouterState | None) -> bool:
        """Whether applying this would change nothing the engine observes: empty, or only
        traffic the router already holds (a routed canary's decision always names its weights,
        and the router's writer makes no write then)."""
        if self.traffic is None:
            return self.empty
        rest = replace(self, traffic=None, traffic_first=False)
        return rest.empty and router is not None and router.holds(self.traffic)


@dataclass
class Decision:
    desired: Desired
    status: RolloutStatus
    transitions: list[Transition] = field(default_factory=list)
    # Seconds until something is due (pause end, scale-down, deadline); None: only on change.
    requeue_after: float | None = None
