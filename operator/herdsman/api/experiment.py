"""The Experiment resource: ReplicaSets from named pod templates, run for a while beside
analyses, and a verdict (Argo Rollouts' Experiment, with its field names).

An Experiment stands on its own or is made by a Rollout's `experiment` step (then it is owned
by the Rollout and the step waits for its verdict). All its state is in `ExperimentStatus`; its
ReplicaSets and AnalysisRuns carry an owner reference to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from herdsman.api.base import (
    API_VERSION,
    MAX_LIST,
    ApiModel,
    Condition,
    Duration,
    LabelSelector,
    ObjectMeta,
    ShortName,
    cel,
    validations,
)
from herdsman.api.experiment_step import (
    DNS_LABEL,
    ExperimentAnalysis,
    ExperimentDryRun,
    MeasurementRetention,
    StepTemplateMeta,
    TemplateService,
)
from herdsman.api.pod_template import PodTemplate


class ExperimentTemplate(ApiModel):
    """One ReplicaSet of the experiment."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.selector.matchLabels.all(k, k in self.template.metadata.labels"
                " && self.template.metadata.labels[k] == self.selector.matchLabels[k])",
                "template.metadata.labels must contain every selector.matchLabels entry",
                ".template.metadata.labels",
            ),
        )
    )

    name: ShortName = Field(..., pattern=DNS_LABEL)
    replicas: int = Field(1, ge=0, le=1000, description="Pods to run (1 when absent).")
    min_ready_seconds: int = Field(0, ge=0)
    selector: LabelSelector
    template: PodTemplate
    service: TemplateService | None = Field(
        None, description="Create a Service selecting this template's pods."
    )
    weight: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Set by a Rollout's experiment step: the traffic share the step asked for.",
    )


class ExperimentSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.templates.all(t, self.templates.exists_one(u, u.name == t.name))",
                "template names must be unique",
                ".templates",
            ),
            cel(
                "!has(self.analyses) || self.analyses.all(a, self.analyses.exists_one(b, b.name == a.name))",
                "analysis names must be unique",
                ".analyses",
            ),
        )
    )

    templates: list[ExperimentTemplate] = Field(..., min_length=1, max_length=16)
    duration: Duration | None = Field(
        None,
        description="How long to run once every template is available; absent: until the "
        "required analyses complete (or, with none, until terminated).",
    )
    progress_deadline_seconds: int = Field(
        600, ge=1, description="How long the templates may take to become available."
    )
    analyses: list[ExperimentAnalysis] = Field(default_factory=list, max_length=16)
    dry_run: list[ExperimentDryRun] = Field(default_factory=list, max_length=MAX_LIST)
    measurement_retention: list[MeasurementRetention] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Accepted for Argo compatibility; runs keep their usual history.",
    )
    analysis_run_metadata: StepTemplateMeta | None = None
    scale_down_delay_seconds: int = Field(
        30, ge=0, description="How long the pods stay after the experiment completes."
    )
    terminate: bool = Field(False, description="Stop now; the verdict is what is known so far.")


ExperimentPhase = Literal["Pending", "Running", "Successful", "Failed", "Error", "Inconclusive"]
TERMINAL: frozenset[str] = frozenset({"Successful", "Failed", "Error", "Inconclusive"})
TemplatePhase = Literal["Progressing", "Running", "Successful", "Failed", "Error"]


class TemplateStatus(ApiModel):
    name: str
    replica_set: str | None = Field(None, description="The ReplicaSet running this template.")
    pod_template_hash: str | None = None
    service_name: str | None = None
    replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    status: TemplatePhase = "Progressing"
    message: str = ""
    last_transition_time: datetime | None = None


class ExperimentAnalysisRunStatus(ApiModel):
    name: str = Field(..., description="The analysis's name in spec.analyses.")
    analysis_run: str
    phase: str = "Pending"
    message: str = ""


class ExperimentStatus(ApiModel):
    observed_generation: int | None = None
    phase: ExperimentPhase | None = None
    message: str = ""
    available_at: datetime | None = Field(
        None, description="When every template was available: the duration counts from here."
    )
    finished_at: datetime | None = None
    scale_down_at: datetime | None = Field(
        None, description="When the ReplicaSets go to zero replicas (scaleDownDelaySeconds)."
    )
    template_statuses: list[TemplateStatus] = Field(default_factory=list)
    analysis_runs: list[ExperimentAnalysisRunStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)


class Experiment(ApiModel):
    """ReplicaSets from named templates, run for a duration with analyses, and a verdict."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = API_VERSION
    kind: Literal["Experiment"] = "Experiment"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ExperimentSpec
    status: ExperimentStatus = Field(default_factory=ExperimentStatus)

    @classmethod
    def from_body(cls, body: Any) -> Experiment:
        return cls.model_validate(dict(body))


__all__ = [
    "TERMINAL",
    "Experiment",
    "ExperimentSpec",
    "ExperimentStatus",
    "ExperimentTemplate",
    "TemplateStatus",
]
