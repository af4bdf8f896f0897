"""The pieces of an Experiment that a Rollout's `experiment` step shares: analyses and arguments,
and the step itself.

Apart from `herdsman.api.experiment` because `herdsman.api.rollout` needs the step, and the
Experiment kind needs the Rollout's pod template: this module imports neither, so no cycle.
Field names are Argo Rollouts'.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from herdsman.api.base import (
    MAX_LIST,
    MAX_SHORT,
    ApiModel,
    Duration,
    LabelValue,
    Name,
    ShortName,
    cel,
    validations,
)

DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# `{{templates.<name>.podTemplateHash}}` in an analysis argument: the hash of that template's pods.
TEMPLATE_HASH_PLACEHOLDER = r"\{\{\s*templates\.([^.}\s]+)\.podTemplateHash\s*\}\}"


class ExperimentSecretKeyRef(ApiModel):
    name: Name
    key: Name


class ExperimentFieldRef(ApiModel):
    field_path: str = Field(..., max_length=512, description="A path into the Experiment.")


class ExperimentArgumentValueFrom(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[has(self.secretKeyRef), has(self.fieldRef), has(self.podTemplateHashValue)]"
                ".filter(x, x).size() == 1",
                "valueFrom: set exactly one of secretKeyRef, fieldRef, podTemplateHashValue",
            )
        )
    )

    secret_key_ref: ExperimentSecretKeyRef | None = None
    field_ref: ExperimentFieldRef | None = None
    pod_template_hash_value: Literal["Stable", "Latest"] | None = Field(
        None,
        description="In a Rollout's experiment step: the pod-template hash of the rollout's "
        "stable (Stable) or new (Latest) server group.",
    )


class ExperimentArgument(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.value) != has(self.valueFrom)", "set exactly one of value or valueFrom")
        )
    )

    name: ShortName
    value: str | None = Field(
        None,
        max_length=4096,
        description="May hold {{templates.<name>.podTemplateHash}}, the hash of that template's pods.",
    )
    value_from: ExperimentArgumentValueFrom | None = None


class ExperimentAnalysis(ApiModel):
    """An AnalysisRun the experiment starts once every template's pods are available."""

    name: ShortName = Field(..., pattern=DNS_LABEL)
    template_name: Name
    cluster_scope: bool = Field(False, description="Refer to a ClusterAnalysisTemplate instead.")
    args: list[ExperimentArgument] = Field(default_factory=list, max_length=MAX_LIST)
    required_for_completion: bool = Field(
        False,
        description="The experiment does not complete before this analysis has, even past its duration.",
    )


class ExperimentDryRun(ApiModel):
    metric_name: ShortName = Field(..., description="A metric name (or a regular expression).")


class MeasurementRetention(ApiModel):
    metric_name: ShortName = Field(..., description="A metric name (or a regular expression).")
    limit: int = Field(..., ge=1, le=1000)


class TemplateService(ApiModel):
    name: ShortName | None = Field(
        None, pattern=DNS_LABEL, description="Name of the Service; the ReplicaSet's when absent."
    )


# --- the Rollout's experiment step --------------------------------------------------------------


class StepTemplateMeta(ApiModel):
    labels: dict[str, LabelValue] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_LIST}
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_LIST}
    )


class StepSelector(ApiModel):
    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_LIST}
    )


class RolloutExperimentTemplate(ApiModel):
    """One ReplicaSet of the step's experiment, made from the stable or the canary pod spec."""

    name: ShortName = Field(..., pattern=DNS_LABEL, max_length=MAX_SHORT)
    spec_ref: Literal["stable", "canary"] = Field(
        ..., description="Which pod template to run: the stable group's or the new revision's."
    )
    replicas: int | None = Field(None, ge=0, le=1000, description="Pods to run; 1 when absent.")
    weight: int | None = Field(
        None,
        ge=0,
        le=100,
        description="With a traffic router: the share of traffic for these pods (not yet "
        "routed by Herdsman: accepted and ignored).",
    )
    metadata: StepTemplateMeta | None = Field(
        None, description="Labels and annotations added to the pods."
    )
    selector: StepSelector | None = Field(
        None, description="The ReplicaSet's selector; the rollout's when absent."
    )
    service: TemplateService | None = None


class RolloutExperimentStep(ApiModel):
    """Run an Experiment beside the canary; the rollout goes on when it succeeds and aborts when
    it fails."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.templates.all(t, self.templates.exists_one(u, u.name == t.name))",
                "experiment template names must be unique",
                ".templates",
            ),
            cel(
                "!has(self.analyses) || self.analyses.all(a, self.analyses.exists_one(b, b.name == a.name))",
                "experiment analysis names must be unique",
                ".analyses",
            ),
        )
    )

    duration: Duration | None = Field(
        None,
        description="How long the experiment runs once its pods are available; absent: until "
        "its required analyses complete.",
    )
    templates: list[RolloutExperimentTemplate] = Field(..., min_length=1, max_length=16)
    analyses: list[ExperimentAnalysis] = Field(default_factory=list, max_length=16)
    dry_run: list[ExperimentDryRun] = Field(default_factory=list, max_length=MAX_LIST)
    analysis_run_metadata: StepTemplateMeta | None = None
    scale_down_delay_seconds: int | None = Field(
        None, ge=0, description="How long the experiment's pods stay after it completes (30s)."
    )
