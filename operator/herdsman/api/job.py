"""The Job metric provider's spec (`provider.job`), Argo Rollouts' field for field.

A measurement is a Kubernetes Job (batch/v1) made from `spec`, with `metadata`'s labels and
annotations: it is Successful when the Job succeeds and Failed when it fails. The Job spec is
checked here only where a mistake would otherwise surface as a Job the API server refuses at
every measurement (no containers, a restartPolicy a Job cannot have); everything else is handed
to the API server as written, after `{{args.*}}` placeholders are filled in.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from herdsman.api.base import MAX_LIST, ApiModel, cel, validations
from herdsman.api.pod_template import Container


class JobObjectMeta(ApiModel):
    """Labels and annotations for the Job (Argo's `metadata`); its name is the operator's."""

    labels: dict[str, str] = Field(default_factory=dict, json_schema_extra={"maxProperties": 64})
    annotations: dict[str, str] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": 64}
    )


class JobPodSpec(ApiModel):
    """The Job's pod spec; passed through, only containers and restartPolicy checked."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra=validations(
            cel(
                "has(self.restartPolicy) && self.restartPolicy in ['Never', 'OnFailure']",
                "a Job's pods need restartPolicy Never or OnFailure",
                ".restartPolicy",
            )
        ),
    )

    containers: list[Container] = Field(..., min_length=1, max_length=MAX_LIST)
    restart_policy: str | None = None


class JobPodTemplateMeta(ApiModel):
    model_config = ConfigDict(extra="allow")

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class JobPodTemplate(ApiModel):
    metadata: JobPodTemplateMeta | None = None
    spec: JobPodSpec


class JobSpec(ApiModel):
    """A batch/v1 JobSpec; `template` is required, the rest is the API server's to check."""

    model_config = ConfigDict(extra="allow")

    template: JobPodTemplate
    backoff_limit: int | None = Field(None, ge=0)
    active_deadline_seconds: int | None = Field(None, ge=1)


class JobMetric(ApiModel):
    """A Kubernetes Job per measurement: Succeeded is Successful, Failed is Failed."""

    metadata: JobObjectMeta | None = Field(
        None, description="Labels and annotations put on each Job."
    )
    spec: JobSpec
