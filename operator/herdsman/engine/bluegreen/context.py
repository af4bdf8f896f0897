"""The state one blue/green pass works on, shared by every concern of the strategy; and the
names both the strategy and its status summary use."""

from __future__ import annotations

from typing import Literal

from herdsman.api.rollout import BlueGreenStrategy
from herdsman.api.rollout_status import BlueGreenStatus
from herdsman.engine import groups
from herdsman.engine.plan import Plan
from herdsman.naming import LABEL_GROUP, template_hash

Kind = Literal["prePromotion", "postPromotion"]
Verdict = Literal["passed", "failed", "inconclusive", "waiting"]
SKIPPED = "Skipped"
WORDS: dict[Kind, str] = {"prePromotion": "pre-promotion", "postPromotion": "post-promotion"}


class BlueGreen:
    def __init__(self, plan: Plan, strategy: BlueGreenStrategy) -> None:
        self.plan = plan
        self.strategy = strategy
        self.st = plan.status
        self.world = plan.world
        self.now = plan.now
        self.total = plan.spec.replicas
        self.pod_hash = template_hash(plan.spec.pod_template)
        self.revision = groups.revision_for(plan, self.pod_hash)
        self.current_name = groups.release_name(plan, self.revision)
        self.current = self.world.release(self.pod_hash)
        self.bg = (plan.old.blue_green or BlueGreenStatus()).model_copy(deep=True)
        self.scale_down_at = groups.recorded_scale_down(plan)
        self.sizes: dict[str, int] = {}
        self.active_now = self.selects(strategy.active_service)
        # Groups the active service leaves in this pass -> seconds they stay warm.
        self.leaving: dict[str, int] = {}

    def selects(self, service: str | None) -> str | None:
        state = self.world.services.get(service or "")
        return state.selector.get(LABEL_GROUP) if state is not None else None

    def ready(self, name: str, size: int) -> bool:
        """The group has `size` pods available (any beyond are on their way out), and its
        controller has caught up with what we asked."""
        g = self.world.group(name)
        if g is None:
            return size == 0  # nothing to wait for (previewReplicaCount 0, or spec.replicas 0)
        return g.replicas >= size and g.available >= size and g.settled
