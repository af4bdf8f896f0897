"""The Rollout resource: spec (what the user wants) and status (everything the operator knows).

Field names follow Argo Rollouts wherever the concept is the same, so manifests port with a
changed apiVersion. Structural rules the API server can check live here as CEL
(`x-kubernetes-validations`); rules that need the cluster (does the Service exist?) live in
`herdsman.engine.validation` and surface as an `InvalidSpec` condition instead.

All state the operator needs to resume after a crash is in `RolloutStatus`; nothing else is kept.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema
from pydantic.config import JsonDict

from herdsman.api.base import (
    API_VERSION,
    MAX_LIST,
    MAX_SHORT,
    ApiModel,
    Condition,
    Duration,
    IntOrString,
    LabelSelector,
    LabelValue,
    Name,
    ObjectMeta,
    ShortName,
    cel,
    exactly_one,
    validations,
)
from herdsman.api.chaos import BackgroundChaos, ChaosStatus, ChaosStep
from herdsman.api.experiment_step import RolloutExperimentStep
from herdsman.api.routing import PingPong, StablePingPong, TrafficRouting

DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# A Kubernetes label value. Checked on the template's labels, which hold every selector label
# too (see RolloutSpec): otherwise the API server takes the Rollout and then refuses every
# ReplicaSet made from it, and the rollout never starts.
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


# --- pod template --------------------------------------------------------------------------------


# A resource quantity as Kubernetes parses it: "16Mi", "0.5", "1e3", or a plain number.
_QUANTITY = re.compile(
    r"^[+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _quantity(value: int | float | str) -> int | float | str:
    if isinstance(value, str) and not _QUANTITY.match(value):
        raise ValueError(
            f"quantities must match the regular expression"
            f" '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' ({value!r})"
        )
    return value


# Left untyped in the CRD (numbers such as `cpu: 0.5` are valid, which a CRD int-or-string
# refuses, and CEL cannot read untyped map values), as Argo's CRD leaves it. The model checks
# it: lint refuses a malformed quantity naming the field, and the operator holds such a
# Rollout as InvalidSpec before any ReplicaSet is refused for it (Argo does the same).
Quantity = Annotated[
    int | float | str,
    AfterValidator(_quantity),
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]


class ResourceRequirements(ApiModel):
    model_config = ConfigDict(extra="allow")

    limits: dict[str, Quantity] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_LIST}
    )
    requests: dict[str, Quantity] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_LIST}
    )


class Container(ApiModel):
    """A container; name, image and resources are checked here, the rest is passed through."""

    model_config = ConfigDict(extra="allow")

    name: ShortName
    image: str = Field(..., min_length=1, max_length=1024)
    resources: ResourceRequirements | None = None


class PodSpec(ApiModel):
    """A pod spec, passed through to the server group untouched."""

    model_config = ConfigDict(extra="allow")

    containers: list[Container] = Field(..., min_length=1, max_length=MAX_LIST)


class TemplateMeta(ApiModel):
    labels: dict[str, Annotated[LabelValue, Field(pattern=LABEL_VALUE)]] = Field(
        ...,
        min_length=1,
        description="Must include every selector label.",
        json_schema_extra={"maxProperties": MAX_LIST},
    )
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplate(ApiModel):
    """The pod template of every server group created from this revision. Never mutated.

    `spec` may only be absent with `spec.workloadRef` (see RolloutSpec's rules)."""

    metadata: TemplateMeta
    spec: PodSpec | None = None


class PodMetadata(ApiModel):
    """Labels and annotations that belong to a role, not a revision (Argo's ephemeral
    metadata): set on a group's pods while the group holds the role, removed after."""

    labels: dict[str, Annotated[LabelValue, Field(pattern=LABEL_VALUE)]] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_LIST}
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_LIST}
    )


class PreferredAntiAffinity(ApiModel):
    weight: int = Field(..., ge=1, le=100)


class RequiredAntiAffinity(ApiModel):
    pass


class AntiAffinity(ApiModel):
    """Keep a new group's pods off the nodes of the previous group's pods (Argo's antiAffinity)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            exactly_one(
                [
                    "preferredDuringSchedulingIgnoredDuringExecution",
                    "requiredDuringSchedulingIgnoredDuringExecution",
                ],
                "antiAffinity",
            )
        )
    )

    preferred_during_scheduling_ignored_during_execution: PreferredAntiAffinity | None = None
    required_during_scheduling_ignored_during_execution: RequiredAntiAffinity | None = None


# --- analysis references (shared with blue/green and background analysis) ----------------------


class SecretKeyRef(ApiModel):
    name: Name
    key: Name


class FieldRef(ApiModel):
    field_path: str = Field(
        ...,
        max_length=512,
        description="A path into this Rollout, e.g. metadata.name or spec.template.spec.containers[0].image.",
    )


class ArgumentValueFrom(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            exactly_one(["secretKeyRef", "fieldRef", "podTemplateHashValue"], "valueFrom")
        )
    )

    secret_key_ref: SecretKeyRef | None = None
    field_ref: FieldRef | None = None
    pod_template_hash_value: Literal["Stable", "Latest"] | None = Field(
        None,
        description="The pod-template hash (label herdsman.dev/pod-template-hash) of the stable "
        "(Stable) or the new (Latest) server group, read when the AnalysisRun is created.",
    )


class AnalysisRunArgument(ApiModel):
    """An argument passed to the analysis templates: a literal value or a reference."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.value) != has(self.valueFrom)", "set exactly one of value or valueFrom")
        )
    )

    name: ShortName
    value: str | None = Field(None, max_length=4096)
    value_from: ArgumentValueFrom | None = None


class AnalysisTemplateRef(ApiModel):
    template_name: Name
    cluster_scope: bool = Field(False, description="Refer to a ClusterAnalysisTemplate instead.")


class DryRunMetric(ApiModel):
    metric_name: ShortName


class MeasurementRetention(ApiModel):
    """How many measurements of a metric the run's status keeps ('*': every metric)."""

    metric_name: ShortName
    limit: int = Field(..., ge=1, le=1000)


# Argo's controller refuses two rules for one metric name when it builds the run; as a list-map
# the API server (and lint) refuse them at once, naming the entry.
_BY_METRIC_NAME: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["metricName"],
}


class AnalysisRunMetadata(ApiModel):
    """Labels and annotations put on the AnalysisRuns an analysis creates (Argo's field).
    Herdsman's own labels (herdsman.dev/*, app.kubernetes.io/managed-by) win over these: the
    operator finds its runs by them."""

    labels: dict[str, Annotated[LabelValue, Field(pattern=LABEL_VALUE)]] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_LIST}
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_LIST}
    )


class RolloutAnalysis(ApiModel):
    """Analysis templates to run together as one AnalysisRun."""

    templates: list[AnalysisTemplateRef] = Field(..., min_length=1, max_length=16)
    args: list[AnalysisRunArgument] = Field(default_factory=list, max_length=MAX_LIST)
    dry_run: list[DryRunMetric] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Metrics measured and reported but never failing the run; added to the "
        "templates' dryRun (a metric named twice is an error, as in Argo).",
        json_schema_extra=_BY_METRIC_NAME,
    )
    measurement_retention: list[MeasurementRetention] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Measurements the run's status keeps per metric; added to the templates' "
        "measurementRetention (a metric named twice is an error, as in Argo).",
        json_schema_extra=_BY_METRIC_NAME,
    )
    analysis_run_metadata: AnalysisRunMetadata | None = Field(
        None, description="Labels and annotations for the AnalysisRuns this analysis creates."
    )


class BackgroundAnalysis(RolloutAnalysis):
    """Analysis that runs beside the steps from `startingStep` until the rollout completes."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.chaos) || !has(self.chaos.startingStep)"
                " || self.chaos.startingStep >= (has(self.startingStep) ? self.startingStep : 0)",
                "chaos.startingStep must be at least the analysis's startingStep: the background"
                " analysis judges the fault, so it runs before the fault starts",
                ".chaos.startingStep",
            ),
        )
    )

    starting_step: int | None = Field(None, ge=0, le=MAX_LIST)
    chaos: BackgroundChaos | None = Field(
        None,
        description="Inject a failure into the canary only while this analysis judges it,"
        " beside the steps (herdsman.dev; see api/chaos.py).",
    )


# --- canary steps ---------------------------------------------------------------------------------


class PauseStep(ApiModel):
    duration: Duration | None = Field(
        None, description="How long to pause (e.g. 30s, 5m, or seconds). Absent: until promoted."
    )


class SetCanaryScale(ApiModel):
    """Scale the canary independently of its traffic weight (meaningful with a traffic router)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            exactly_one(["replicas", "weight", "matchTrafficWeight"], "setCanaryScale")
        )
    )

    replicas: int | None = Field(None, ge=0)
    weight: int | None = Field(None, ge=0, le=100)
    match_traffic_weight: bool | None = None


class StringMatch(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(exactly_one(["exact", "prefix", "regex"], "match"))
    )

    exact: str | None = Field(None, max_length=1024)
    prefix: str | None = Field(None, max_length=1024)
    regex: str | None = Field(None, max_length=1024)


class HeaderMatch(ApiModel):
    header_name: str = Field(..., min_length=1, max_length=256)
    header_value: StringMatch


class SetHeaderRoute(ApiModel):
    """Send requests whose headers match to the canary. An empty match removes the route."""

    name: ShortName = Field(..., description="One of trafficRouting.managedRoutes.")
    match: list[HeaderMatch] = Field(default_factory=list, max_length=16)


class RouteMatch(ApiModel):
    method: StringMatch | None = None
    path: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": 16}
    )


class SetMirrorRoute(ApiModel):
    """Copy matching requests to the canary; responses from the copy are dropped."""

    name: ShortName = Field(..., description="One of trafficRouting.managedRoutes.")
    percentage: int = Field(100, ge=0, le=100)
    match: list[RouteMatch] = Field(default_factory=list, max_length=16)


STEP_KINDS = [
    "setWeight",
    "pause",
    "setCanaryScale",
    "analysis",
    "setHeaderRoute",
    "setMirrorRoute",
    "chaos",
    "experiment",
]
# Declared so a manifest with one is refused in our words (naming the field), not as an
# unknown field; Herdsman runs no step plugins.
REFUSED_STEP_KINDS = ["plugin"]
# Argo's step-combination rule (its validation's hasMultipleStepsType): a step holds at most one
# of these (and Herdsman's chaos step); setCanaryScale, setHeaderRoute and setMirrorRoute may go
# with any of them and with each other.
EXCLUSIVE_STEP_KINDS = ["setWeight", "pause", "experiment", "analysis", "chaos"]
COMBINABLE_STEP_KINDS = ["setCanaryScale", "setHeaderRoute", "setMirrorRoute"]
# Which part of a combined step decides when it is done, first first: Argo's order in
# completedCurrentCanaryStep (a pause, then the scale, then the weight, ...).
COMPLETION_ORDER = [
    "pause",
    "setCanaryScale",
    "setWeight",
    "experiment",
    "analysis",
    "chaos",
    "setHeaderRoute",
    "setMirrorRoute",
]


def _flags(kinds: list[str]) -> str:
    return "[" + ", ".join(f"has(self.{k})" for k in kinds) + "]"


class CanaryStep(ApiModel):
    """One step of a canary: one of setWeight, pause, experiment, analysis or chaos, with any of
    setCanaryScale, setHeaderRoute and setMirrorRoute beside it (or those alone), as Argo
    allows."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"{_flags(STEP_KINDS + REFUSED_STEP_KINDS)}.exists(x, x)",
                f"step: set at least one of {', '.join(STEP_KINDS)}",
            ),
            cel(
                f"{_flags(EXCLUSIVE_STEP_KINDS)}.filter(x, x).size() <= 1",
                f"step: set at most one of {', '.join(EXCLUSIVE_STEP_KINDS)} (Argo's rule;"
                f" {', '.join(COMBINABLE_STEP_KINDS)} may go with any of them)",
            ),
            cel(
                "!has(self.plugin)",
                "step plugins are not supported by Herdsman: replace the step with built-in"
                " steps (setWeight, pause, analysis, ...)",
                ".plugin",
            ),
        )
    )

    # The upper bound is maxTrafficWeight (CanaryStrategy's rule), 100 unless set.
    set_weight: int | None = Field(
        None,
        ge=0,
        description="Traffic to the canary, out of trafficRouting.maxTrafficWeight (100).",
    )
    pause: PauseStep | None = None
    set_canary_scale: SetCanaryScale | None = None
    analysis: RolloutAnalysis | None = None
    set_header_route: SetHeaderRoute | None = None
    set_mirror_route: SetMirrorRoute | None = None
    chaos: ChaosStep | None = Field(
        None, description="Inject a failure into the canary only (herdsman.dev; see api/chaos.py)."
    )
    experiment: RolloutExperimentStep | None = None
    plugin: dict[str, Any] | None = Field(
        None,
        description="Refused: Herdsman runs no step plugins.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    @property
    def kinds(self) -> list[str]:
        """Every part of the step, in COMPLETION_ORDER."""
        return [k for k in COMPLETION_ORDER if getattr(self, _snake(k)) is not None]

    @property
    def kind(self) -> str:
        """The part that decides when the step is done (the only one, in most steps)."""
        kinds = self.kinds
        return kinds[0] if kinds else "empty"


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)


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


# --- status ---------------------------------------------------------------------------------------

Phase = Literal["Progressing", "Paused", "Healthy", "Degraded"]
Role = Literal["stable", "canary", "baseline", "active", "preview", "old"]


class ServerGroupStatus(ApiModel):
    name: str
    revision: int
    role: Role
    pod_template_hash: str
    replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    scale_down_at: datetime | None = Field(
        None, description="When this group goes to zero replicas."
    )


class PauseCondition(ApiModel):
    reason: Literal["PauseStep", "Inconclusive", "UserPause", "BlueGreenPause"]
    start_time: datetime


class PromoteRequest(ApiModel):
    """Written by `kubectl herdsman promote`; consumed (cleared) by the operator."""

    from_step: int | None = Field(
        None,
        description="The step the user saw; a request for a step already passed is stale and dropped.",
    )
    full: bool = Field(False, description="Skip every remaining step.")


class Weights(ApiModel):
    """The traffic split actually in effect, out of maxTrafficWeight (100 unless
    trafficRouting.maxTrafficWeight says otherwise, as Argo's status does); always sums to it."""

    stable: int = 100
    canary: int = 0
    baseline: int = 0


class AnalysisRunRef(ApiModel):
    name: str
    phase: str = ""
    kind: Literal["step", "background", "prePromotion", "postPromotion"] = "step"
    step_index: int | None = None


class BlueGreenStatus(ApiModel):
    active_server_group: str | None = None
    preview_server_group: str | None = None
    promoted_at: datetime | None = None
    preview_ready_at: datetime | None = None


class ReleaseCost(ApiModel):
    """What one past release cost beyond the stable size (kept for `kubectl herdsman cost`)."""

    revision: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    replica_seconds: float = 0.0
    cpu_core_seconds: float = 0.0
    memory_gib_seconds: float = 0.0
    amount: float = Field(0.0, description="Money, at the operator's prices.")


class CostStatus(ApiModel):
    """Replica-seconds spent beyond the stable size, per role, for the current release, and
    what they cost from the pods' requests at the operator's prices per CPU-hour and GiB-hour."""

    revision: int | None = None
    started_at: datetime | None = None
    cpu_core_seconds: float = 0.0
    memory_gib_seconds: float = 0.0
    amount: float = Field(0.0, description="Money spent so far on extra pods, at `currency`.")
    currency: str = "USD"
    history: list[ReleaseCost] = Field(
        default_factory=list, max_length=50, description="Past releases, newest last."
    )
    canary_replica_seconds: float = 0.0
    baseline_replica_seconds: float = 0.0
    preview_replica_seconds: float = 0.0
    old_replica_seconds: float = Field(
        0.0, description="A previous group kept warm after promotion."
    )
    measured_at: datetime | None = None


class RolloutStatus(ApiModel):
    observed_generation: int | None = None
    phase: Phase | None = None
    message: str = ""
    # Revisions and groups.
    current_revision: int | None = Field(
        None, description="Revision of spec.template's server group."
    )
    stable_revision: int | None = None
    current_pod_hash: str | None = None
    stable_server_group: str | None = None
    canary_server_group: str | None = None
    baseline_server_group: str | None = None
    stable_ping_pong: StablePingPong | None = Field(
        None,
        description="With pingPong: which Service is stable now (ping until a release completes).",
    )
    server_groups: list[ServerGroupStatus] = Field(default_factory=list)
    # Steps and traffic.
    current_step_index: int | None = None
    step: str | None = Field(
        None, description="Human form of the position, e.g. 3/7 (printer column)."
    )
    step_started_at: datetime | None = None
    canary_weight: int = Field(0, description="The weight the current step asks for.")
    weights: Weights = Field(default_factory=Weights)
    pause_conditions: list[PauseCondition] = Field(default_factory=list)
    # User intents, written by the kubectl plugin, consumed by the operator.
    abort: bool = Field(False, description="Set by `kubectl herdsman abort`; cleared by retry.")
    promote: PromoteRequest | None = None
    # Operator bookkeeping.
    aborted_at: datetime | None = None
    abort_reason: str | None = Field(
        None,
        description="Why the operator aborted (failed analysis, progress deadline); absent: the user did.",
    )
    attempt: int = Field(
        0, description="Bumped by every retry; names this attempt's analysis runs."
    )
    last_progress_at: datetime | None = None
    restarted_at: datetime | None = None
    analysis_runs: list[AnalysisRunRef] = Field(default_factory=list)
    blue_green: BlueGreenStatus | None = None
    cost: CostStatus | None = None
    chaos: ChaosStatus | None = None
    # Scale subresource (an HPA reads these).
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    selector: str = ""
    conditions: list[Condition] = Field(default_factory=list)


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
