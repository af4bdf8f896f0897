"""The Rollout's status: everything the operator knows, and all it needs to resume after a crash."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from herdsman.api.base import (
    ApiModel,
    Condition,
)
from herdsman.api.chaos import ChaosStatus
from herdsman.api.routing import StablePingPong

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
