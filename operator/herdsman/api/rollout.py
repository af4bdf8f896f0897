"""The Rollout resource: its spec (what the user wants), the strategies, and the whole object.

The parts live beside it: the pod template (pod_template.py), analysis references
(analysis_ref.py), canary steps (canary_steps.py) and the status (rollout_status.py).

Field names follow Argo Rollouts wherever the concept is the same, so manifests port with a
changed apiVersion. Structural rules the API server can check live here as CEL
(`x-kubernetes-validations`); rules that need the cluster (does the Service exist?) live in
`herdsman.engine.validation` and surface as an `InvalidSpec` condition instead.

All state the operator needs to resume after a crash is in `RolloutStatus`; nothing else is kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from herdsman.api.analysis_ref import (
    BackgroundAnalysis,
    RolloutAnalysis,
)
from herdsman.api.base import (
    API_VERSION,
    MAX_LIST,
    MAX_SHORT,
    ApiModel,
    IntOrString,
    LabelSelector,
    Name,
    ObjectMeta,
    ShortName,
    cel,
    validations,
)
from herdsman.api.canary_steps import CanaryStep
from herdsman.api.pod_template import (
    AntiAffinity,
    PodMetadata,
    PodTemplate,
)
from herdsman.api.rollout_status import (
    RolloutStatus,
    ServerGroupStatus,
)
from herdsman.api.routing import PingPong, TrafficRouting

DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


# --- strategies -----------------------------------------------------------------------------------


class ReplicaProgressThreshold(ApiModel):
    """How much of a step's canary must be available for the step's scale-up to count as done
    (Argo's replicaProgressThreshold): a percentage of the pods the step asks for, or a count."""

    type: Literal["Percent", "Pod"] = Field(
        ..., description="Percent: of the step's canary pods; Pod: a number of pods."
    )
    value: int = Field(..., ge=1, description="Percent or pods; never more than the step asks for.")


# maxTrafficWeight as a CEL expression over CanaryStrategy (`self`).
_MAX_WEIGHT = (
    "(has(self.trafficRouting) && has(self.trafficRouting.maxTrafficWeight)"
    " ? self.trafficRouting.maxTrafficWeight : 100)"
)


class CanaryStrategy(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!((self.maxSurge == 0 || self.maxSurge == '0%')"
                " && (self.maxUnavailable == 0 || self.maxUnavailable == '0%'))",
                "maxSurge and maxUnavailable cannot both be zero",
                ".maxUnavailable",
            ),
            cel(
                "!has(self.analysis) || !has(self.analysis.startingStep)"
                " || self.analysis.startingStep <= size(self.steps)",
                "analysis.startingStep must not be beyond the last step",
                ".analysis.startingStep",
            ),
            cel(
                "has(self.trafficRouting) || self.steps.all(s, !has(s.setHeaderRoute) && !has(s.setMirrorRoute))",
                "setHeaderRoute and setMirrorRoute steps need trafficRouting",
                ".steps",
            ),
            cel(
                "has(self.trafficRouting) || self.steps.all(s, !has(s.setCanaryScale))",
                "setCanaryScale steps need trafficRouting: without a router the replica ratio is the weight",
                ".steps",
            ),
            cel(
                "self.steps.all(s, !has(s.setWeight) || s.setWeight <= " + _MAX_WEIGHT + ")",
                "setWeight must be between 0 and maxTrafficWeight (trafficRouting.maxTrafficWeight,"
                " 100 when unset)",
                ".steps",
            ),
            cel(
                "!self.baseline || self.steps.all(s, !has(s.setWeight) || 2 * s.setWeight <= "
                + _MAX_WEIGHT
                + ")",
                "with baseline, setWeight cannot exceed 50 (half of maxTrafficWeight): the canary"
                " and the baseline each carry the weight",
                ".steps",
            ),
            cel(
                "!has(self.trafficRouting) || has(self.pingPong)"
                " || (has(self.stableService) && has(self.canaryService))"
                " || (has(self.trafficRouting.istio)"
                " && has(self.trafficRouting.istio.destinationRule))",
                "trafficRouting needs both stableService and canaryService (or pingPong, or"
                " istio with a destinationRule)",
                ".trafficRouting",
            ),
            cel(
                "!has(self.pingPong) || (has(self.trafficRouting)"
                " && (has(self.trafficRouting.alb) || has(self.trafficRouting.istio)))",
                "pingPong works with the alb and istio routers only",
                ".pingPong",
            ),
            cel(
                "!has(self.baselineService) || self.baseline",
                "baselineService needs baseline: true",
                ".baselineService",
            ),
            cel(
                "!has(self.trafficRouting) || !self.baseline || has(self.baselineService)",
                "with trafficRouting, baseline needs a baselineService: the router sends the"
                " baseline its share through it, the same share as the canary",
                ".baselineService",
            ),
            cel(
                "has(self.analysis) || self.steps.all(s, !has(s.chaos))",
                "a chaos step needs background analysis (spec.strategy.canary.analysis) to judge"
                " the canary under the fault",
                ".analysis",
            ),
            cel(
                "self.steps.all(s, !has(s.chaos) || !has(s.chaos.httpFault))"
                " || (has(self.trafficRouting) && has(self.trafficRouting.istio))",
                "a chaos step's httpFault (steps[].chaos.httpFault) needs trafficRouting.istio:"
                " Istio's VirtualService carries the fault on a route to the canary only",
                ".trafficRouting",
            ),
            cel(
                "!has(self.analysis) || !has(self.analysis.chaos)"
                " || self.steps.all(s, !has(s.chaos))",
                "analysis.chaos and chaos steps do not go together: one fault at a time, one"
                " status.chaos",
                ".analysis.chaos",
            ),
            cel(
                "!has(self.analysis) || !has(self.analysis.chaos)"
                " || !has(self.analysis.chaos.httpFault)"
                " || (has(self.trafficRouting) && has(self.trafficRouting.istio))",
                "analysis.chaos.httpFault needs trafficRouting.istio: Istio's VirtualService"
                " carries the fault on a route to the canary only",
                ".analysis.chaos.httpFault",
            ),
            cel(
                "!has(self.analysis) || !has(self.analysis.chaos)"
                " || (has(self.analysis.chaos.startingStep) ? self.analysis.chaos.startingStep"
                " : has(self.analysis.startingStep) ? self.analysis.startingStep : 0)"
                " < size(self.steps)",
                "analysis.chaos starts on entering a step: its startingStep (default: the"
                " analysis's) must be below the number of steps",
                ".analysis.chaos.startingStep",
            ),
        )
    )

    stable_service: ShortName | None = Field(
        None,
        description="Service the operator points at the stable server group.",
        pattern=DNS_LABEL,
    )
    canary_service: ShortName | None = Field(
        None,
        description="Service the operator points at the canary server group.",
        pattern=DNS_LABEL,
    )
    ping_pong: PingPong | None = Field(
        None,
        description="Two Services that take turns as stable and canary (alb, istio); the"
        " routers use them instead of stableService and canaryService.",
    )
    baseline: bool = Field(
        False,
        description="Run a fresh baseline group of the stable version beside the canary, "
        "same size, for fair comparison.",
    )
    baseline_service: ShortName | None = Field(
        None,
        description="Service the operator points at the baseline server group (the stable "
        "group while there is none). Required with trafficRouting: the router gives it the "
        "canary's weight, so baseline and canary are judged on equal traffic.",
        pattern=DNS_LABEL,
    )
    max_surge: IntOrString = Field(
        "25%", description="Pods allowed above spec.replicas while shifting."
    )
    max_unavailable: IntOrString = Field(
        "25%", description="Pods allowed to be unavailable while shifting."
    )
    # The schema default matters: the CEL rules above read self.steps, and without a default a
    # canary with no steps is refused with "no such key: steps".
    steps: list[CanaryStep] = Field(
        default_factory=list, max_length=MAX_LIST, json_schema_extra={"default": []}
    )
    analysis: BackgroundAnalysis | None = Field(
        None, description="Analysis that runs beside the steps."
    )
    traffic_routing: TrafficRouting | None = Field(
        None, description="Absent: the weight is the replica ratio."
    )
    scale_down_delay_seconds: int = Field(
        30,
        ge=0,
        description="How long the previous stable group stays up after a router moved traffic away.",
    )
    abort_scale_down_delay_seconds: int = Field(
        30,
        ge=0,
        description="How long an aborted canary stays up with a router (0 weight) before scaling down.",
    )
    dynamic_stable_scale: bool = Field(
        False, description="With a router, shrink the stable group as weight moves."
    )
    scale_down_delay_revision_limit: int | None = Field(
        None, ge=0, description="How many previous groups may wait scaled up (Argo's meaning)."
    )
    canary_metadata: PodMetadata | None = Field(
        None, description="Labels and annotations on the canary group's pods while it is one."
    )
    stable_metadata: PodMetadata | None = Field(
        None, description="Labels and annotations on the stable group's pods while it is one."
    )
    anti_affinity: AntiAffinity | None = None
    min_pods_per_replica_set: int | None = Field(
        None,
        ge=1,
        description="With a router, a group that runs at all runs at least this many pods.",
    )

    replica_progress_threshold: ReplicaProgressThreshold | None = Field(
        None,
        description="A setWeight or setCanaryScale step is done once this share of its canary"
        " pods is available (absent: all of them).",
    )

    @property
    def max_weight(self) -> int:
        """The total weights are out of: trafficRouting.maxTrafficWeight, else 100."""
        return self.traffic_routing.max_weight if self.traffic_routing is not None else 100


class BlueGreenStrategy(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.previewService) || self.previewService != self.activeService",
                "previewService must differ from activeService",
                ".previewService",
            ),
        )
    )

    active_service: ShortName = Field(
        ..., pattern=DNS_LABEL, description="Service switched to the new group on promotion."
    )
    preview_service: ShortName | None = Field(
        None, pattern=DNS_LABEL, description="Service pointed at the new group before promotion."
    )
    preview_replica_count: int | None = Field(
        None, ge=0, description="Size of the preview group; spec.replicas when absent."
    )
    auto_promotion_enabled: bool = True
    auto_promotion_seconds: int | None = Field(
        None, ge=0, description="Wait this long after the preview is ready, then promote."
    )
    pre_promotion_analysis: RolloutAnalysis | None = None
    post_promotion_analysis: RolloutAnalysis | None = None
    scale_down_delay_seconds: int = Field(30, ge=0)
    scale_down_delay_revision_limit: int | None = Field(
        None, ge=0, description="How many old groups may wait scaled up."
    )
    abort_scale_down_delay_seconds: int = Field(30, ge=0)
    max_unavailable: IntOrString | None = Field(
        None, description="Pods allowed to be unavailable during a restart (Argo: 25%)."
    )
    active_metadata: PodMetadata | None = Field(
        None, description="Labels and annotations on the active group's pods while it is active."
    )
    preview_metadata: PodMetadata | None = Field(
        None, description="Labels and annotations on the preview group's pods while it previews."
    )
    anti_affinity: AntiAffinity | None = None


class Strategy(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.canary) != has(self.blueGreen)", "set exactly one of canary or blueGreen")
        )
    )

    canary: CanaryStrategy | None = None
    blue_green: BlueGreenStrategy | None = None


# --- spec -------------------------------------------------------------------------------------------


class WorkloadRef(ApiModel):
    """A Deployment whose pod template this Rollout rolls out (Argo's workloadRef)."""

    api_version: Literal["apps/v1"] = Field(..., description="apps/v1.")
    kind: Literal["Deployment"]
    name: Name
    scale_down: Literal["never", "onsuccess", "progressively"] | None = Field(
        None,
        description="What happens to the Deployment's own pods: never (absent) leaves them;"
        " onsuccess scales it to 0 once the Rollout is healthy; progressively scales it down"
        " as the Rollout's pods become available, and back up if the rollout aborts.",
    )


class RollbackWindow(ApiModel):
    revisions: int = Field(
        ..., ge=0, description="Going back to one of the last N revisions skips the steps."
    )


class AnalysisRunStrategy(ApiModel):
    """How many finished AnalysisRuns of this Rollout are kept (Argo's spec.analysis)."""

    successful_run_history_limit: int | None = Field(
        None, ge=0, description="Successful runs kept; older ones are deleted. Absent: all."
    )
    unsuccessful_run_history_limit: int | None = Field(
        None,
        ge=0,
        description="Failed, Error and Inconclusive runs kept; older ones are deleted. Absent: all.",
    )


class RolloutSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.template) || has(self.workloadRef)",
                "set template, or workloadRef to take it from a Deployment",
                ".template",
            ),
            cel(
                "has(self.selector) || has(self.workloadRef)",
                "selector is required (it may only be left out with workloadRef)",
                ".selector",
            ),
            cel(
                "!has(self.template) || has(self.template.spec) || has(self.workloadRef)",
                "template.spec is required",
                ".template.spec",
            ),
            cel(
                "!has(self.selector) || !has(self.template) || has(self.workloadRef)"
                " || self.selector.matchLabels.all(k, k in self.template.metadata.labels"
                " && self.template.metadata.labels[k] == self.selector.matchLabels[k])",
                "template.metadata.labels must contain every selector.matchLabels entry",
                ".template.metadata.labels",
            ),
            cel(
                "!has(self.selector) || !has(self.template) || has(self.workloadRef)"
                " || self.selector.matchExpressions.all(e,"
                " e.operator == 'In' ? (e.key in self.template.metadata.labels"
                " && self.template.metadata.labels[e.key] in e.values)"
                " : e.operator == 'NotIn' ? (!(e.key in self.template.metadata.labels)"
                " || !(self.template.metadata.labels[e.key] in e.values))"
                " : e.operator == 'Exists' ? e.key in self.template.metadata.labels"
                " : !(e.key in self.template.metadata.labels))",
                "`selector` does not match template `labels`: every"
                " selector.matchExpressions requirement must hold for"
                " template.metadata.labels",
                ".selector.matchExpressions",
            ),
            cel(
                "!has(self.selector)"
                " || size(self.selector.matchLabels) + size(self.selector.matchExpressions) > 0",
                "empty selector is invalid: set selector.matchLabels or selector.matchExpressions",
                ".selector",
            ),
            cel(
                "!has(self.selector)"
                " || (self.selector.matchLabels.all(k, !k.startsWith('herdsman.dev/'))"
                " && self.selector.matchExpressions.all(e, !e.key.startsWith('herdsman.dev/')))",
                "selector labels under herdsman.dev/ are reserved for server groups",
                ".selector",
            ),
        )
    )

    replicas: int = Field(1, ge=0, le=10000)
    selector: LabelSelector | None = Field(
        None, description="Required unless workloadRef is set (then the Deployment's)."
    )
    template: PodTemplate | None = Field(
        None, description="Required unless workloadRef is set (then the Deployment's)."
    )
    workload_ref: WorkloadRef | None = Field(
        None, description="Take the pod template (and selector) from this Deployment."
    )
    rollback_window: RollbackWindow | None = None
    analysis: AnalysisRunStrategy | None = Field(
        None, description="How many finished AnalysisRuns are kept."
    )
    min_ready_seconds: int = Field(0, ge=0)
    revision_history_limit: int = Field(
        10, ge=0, le=100, description="Old server groups kept at zero replicas for rollback."
    )
    progress_deadline_seconds: int = Field(
        600, ge=1, description="How long a step may make no progress before Degraded."
    )
    progress_deadline_abort: bool = Field(
        False, description="Abort, not just report, when the progress deadline passes."
    )
    paused: bool = Field(False, description="Stop moving (kubectl herdsman pause/resume).")
    restart_at: datetime | None = Field(
        None, description="Pods older than this are replaced (kubectl herdsman restart)."
    )
    strategy: Strategy

    @property
    def pod_template(self) -> dict[str, Any]:
        """The pod template, as the server groups carry it. With workloadRef it exists once
        `herdsman.engine.workload.resolve` copied the Deployment's in; the engine only ever sees
        resolved Rollouts."""
        if self.template is None or self.template.spec is None:
            raise ValueError("spec.template is not resolved (workloadRef not followed yet)")
        return self.template.to_wire()

    @property
    def match_labels(self) -> dict[str, str]:
        return dict(self.selector.match_labels) if self.selector is not None else {}

    @property
    def selector_wire(self) -> dict[str, Any]:
        """The selector as a ReplicaSet carries it (matchExpressions only when set)."""
        return self.selector.to_wire() if self.selector is not None else {"matchLabels": {}}


class Rollout(ApiModel):
    """A service whose every version is an immutable server group, moved to step by step."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = API_VERSION
    kind: Literal["Rollout"] = "Rollout"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RolloutSpec
    status: RolloutStatus = Field(default_factory=RolloutStatus)

    @classmethod
    def from_body(cls, body: Any) -> Rollout:
        """Parse an object as the API server returns it (a dict or a Kopf body)."""
        return cls.model_validate(dict(body))


__all__ = [
    "MAX_SHORT",
    "BlueGreenStrategy",
    "CanaryStep",
    "CanaryStrategy",
    "Rollout",
    "RolloutSpec",
    "RolloutStatus",
    "ServerGroupStatus",
]
