"""Chaos steps: a failure injected into the canary group only, while it is judged.

Netflix's ChAP runs a chaos experiment inside the canary: the failure goes to the experiment
group alone and its metrics are compared with an untouched control. Here the experiment group
is the canary and the control the baseline (or the stable group): a `chaos` step kills a share
of the canary's pods and keeps them down for `duration`, while the rollout's *background
analysis* judges the canary against the baseline. The background analysis is the judge on
purpose: it runs across the chaos step without a gap (an `analysis` step would start after the
fault ended, or would need the fault to outlive its step), and a failure it finds aborts in the
same pass, which ends the fault with the canary. So a chaos step without background analysis is
refused by the API server (`spec.strategy.canary.analysis`), and one placed before the analysis's
`startingStep` is held as InvalidSpec.

The fault is a smaller canary ReplicaSet, never a change to the stable or baseline group: the
ReplicaSet controller deletes the pods, and they stay down while the step lasts. Everything about
the fault is in `status.chaos`, so an operator that restarts finds it, and a pass that finds the
step over, the rollout paused or aborted simply sizes the canary as its step asks again: the
fault is undone by the same write that would have sized the canary anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from herdsman.api.base import ApiModel, Duration

ChaosAction = Literal["killPods"]
ChaosPhase = Literal["Injected", "Removed"]


class ChaosStep(ApiModel):
    """Inject a failure into the canary group for `duration`, judged by background analysis."""

    action: ChaosAction = Field(
        ..., description="killPods: keep `percent` of the canary's pods down for `duration`."
    )
    percent: int = Field(
        ..., ge=1, le=100, description="Share of the canary's pods killed (rounded up)."
    )
    duration: Duration = Field(
        ..., description="How long the failure lasts (e.g. 30s, 2m); the step ends with it."
    )


class ChaosStatus(ApiModel):
    """The fault injected by the current (or last) chaos step: what, where, until when."""

    step_index: int
    revision: int
    server_group: str
    action: ChaosAction
    percent: int
    canary_pods: int = Field(0, description="The canary's pods before the fault.")
    pods_killed: int = 0
    started_at: datetime
    ends_at: datetime
    phase: ChaosPhase = "Injected"
    removed_at: datetime | None = None
    removed_reason: str | None = Field(
        None, description="Why the fault ended: duration over, aborted, paused, new revision."
    )
