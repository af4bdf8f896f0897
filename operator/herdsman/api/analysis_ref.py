"""How a Rollout refers to analysis: templates, arguments, dry runs, retention, metadata.

Shared by canary steps, blue/green pre- and post-promotion analysis and background analysis.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from herdsman.api.base import (
    MAX_LIST,
    ApiModel,
    LabelValue,
    Name,
    ShortName,
    cel,
    exactly_one,
    validations,
)
from herdsman.api.chaos import BackgroundChaos
from herdsman.api.pod_template import LABEL_VALUE

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
