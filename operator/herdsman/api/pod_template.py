"""The pod template a Rollout stamps its server groups from, and its pod metadata per role.

A subset of the PodTemplateSpec the operator reads (the rest passes through untouched), with
the checks that keep a ReplicaSet made from it from being refused after the Rollout is taken.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema

from herdsman.api.base import (
    MAX_LIST,
    ApiModel,
    LabelValue,
    ShortName,
    exactly_one,
    validations,
)

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
