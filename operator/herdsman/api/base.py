"""Building blocks shared by every Herdsman CRD model.

Python attributes are snake_case; the wire format (and the generated CRD) is camelCase, as the
Kubernetes API conventions require. Field descriptions become `kubectl explain` text.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "herdsman.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Bounds that keep the API server's CEL cost estimator happy: every list and string a rule
# touches must have a maximum size, or the CRD itself is refused.
MAX_NAME = 253
MAX_SHORT = 63
MAX_LIST = 64


class ApiModel(BaseModel):
    """Base for every CRD fragment: camelCase on the wire, strict about unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, no nulls."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry; `field_path` points the error at a child field."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


# --- scalar types ------------------------------------------------------------------------------

# A Kubernetes int-or-string (e.g. maxSurge: 1 or "25%").
IntOrString = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\d{1,3}%$"},
            ],
        }
    ),
]

_DURATION_RE = re.compile(r"^(\d+)(ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# A duration as Argo Rollouts writes it: "30s", "5m", "1h", or a plain number of seconds.
Duration = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\d+(ms|s|m|h)$", "maxLength": 32},
            ],
        }
    ),
]


def duration_seconds(value: int | str | None) -> float | None:
    """Seconds in a Duration; None stays None. Raises ValueError on a malformed string."""
    if value is None:
        return None
    if isinstance(value, int):
        return float(value)
    match = _DURATION_RE.match(value.strip())
    if not match:
        raise ValueError(
            f"invalid duration {value!r}: want a number of seconds or e.g. 30s, 5m, 1h"
        )
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """Resolve maxSurge/maxUnavailable style values against a total, as Deployments do."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if not text.endswith("%"):
        return int(text)
    scaled = int(text[:-1]) * total
    return -(-scaled // 100) if round_up else scaled // 100


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
# Label values are at most 63 characters; saying so keeps CEL rules over labels cheap.
LabelValue = Annotated[str, Field(max_length=MAX_SHORT)]
ShortName = Annotated[str, Field(min_length=1, max_length=MAX_SHORT)]


# --- metadata ----------------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads. The CRD leaves metadata to the API server."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


class LabelSelectorRequirement(ApiModel):
    """One `matchExpressions` entry, as Kubernetes defines it."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.operator in ['In', 'NotIn'] ? size(self.values) > 0 : size(self.values) == 0",
                "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                ".values",
            )
        )
    )

    # A qualified label key: an optional DNS prefix (253) and a slash before the name (63).
    key: Annotated[str, Field(min_length=1, max_length=317)]
    operator: SelectorOperator
    # The schema default lets the rules read `values` when a manifest leaves it out.
    values: list[LabelValue] = Field(
        default_factory=list, max_length=MAX_LIST, json_schema_extra={"default": []}
    )

    def matches(self, labels: dict[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels

    def __str__(self) -> str:
        """The requirement in kubectl's selector syntax (`tier in (a,b)`, `!legacy`)."""
        values = ",".join(sorted(self.values))
        return {
            "In": f"{self.key} in ({values})",
            "NotIn": f"{self.key} notin ({values})",
            "Exists": self.key,
            "DoesNotExist": f"!{self.key}",
        }[self.operator]


class LabelSelector(ApiModel):
    """The Kubernetes LabelSelector: matchLabels and matchExpressions, ANDed together."""

    # Schema defaults let the CEL rules read both fields when a manifest sets only one.
    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        description="Labels the rollout's pods carry; every server group adds its own on top.",
        json_schema_extra={"maxProperties": MAX_LIST, "default": {}},
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Requirements the pods' labels meet (In, NotIn, Exists, DoesNotExist).",
        json_schema_extra={"default": []},
    )

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            e.matches(labels) for e in self.match_expressions
        )

    def __str__(self) -> str:
        """kubectl's selector syntax, as `status.selector` (an HPA reads it) carries it."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        parts += [str(e) for e in self.match_expressions]
        return ",".join(parts)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A status condition following the Kubernetes API conventions."""

    type: str = Field(..., max_length=MAX_NAME)
    status: ConditionStatus
    reason: str = Field(
        ..., max_length=1024, description="CamelCase reason for the last transition."
    )
    message: str = Field("", max_length=32768)
    last_transition_time: datetime | None = None
    observed_generation: int | None = None


def exactly_one(fields: list[str], what: str) -> dict[str, str]:
    """A CEL rule: exactly one of `fields` is set on this object."""
    present = ", ".join(f"has(self.{f})" for f in fields)
    return cel(
        f"[{present}].filter(x, x).size() == 1", f"{what}: set exactly one of {', '.join(fields)}"
    )
