"""A canary step: what one step of a canary strategy may do, and the CEL rules on combining
kinds (Argo's: at most one of setWeight, pause, experiment, analysis and chaos per step).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from herdsman.api.analysis_ref import RolloutAnalysis
from herdsman.api.base import (
    ApiModel,
    Duration,
    ShortName,
    cel,
    exactly_one,
    validations,
)
from herdsman.api.chaos import ChaosStep
from herdsman.api.experiment_step import RolloutExperimentStep

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
