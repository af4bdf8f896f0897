"""The state one canary pass works on, shared by every concern of the strategy.

`Canary` holds what each module reads (the plan, the strategy, the revision being rolled out and
its server group) and the scratch they fill together (roles and sizes of the groups). It lives
for one pass: nothing here survives between reconciles; what must, goes to status.
"""

from __future__ import annotations

from herdsman.api.chaos import describe_chaos
from herdsman.api.rollout import CanaryStep, CanaryStrategy
from herdsman.api.rollout_status import Role
from herdsman.engine import groups
from herdsman.engine.plan import Plan
from herdsman.naming import analysis_run_name, template_hash

# With a router, a write is confirmed by reading the router back on the next pass; nothing
# watches the router's objects, so that pass is asked for this soon.
ROUTER_RECHECK_SECONDS = 1.0


def describe(step: CanaryStep) -> str:
    """A step as a person reads it in logs and the plugin: `setWeight 20`, `pause 30s`; the
    parts of a combined step joined, `setCanaryScale 2 pods + setHeaderRoute beta`."""
    parts = [_describe_one(step, kind) for kind in step.kinds]
    return " + ".join(parts) if parts else "empty"


def _describe_one(step: CanaryStep, kind: str) -> str:
    if kind == "setWeight" and step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if kind == "pause" and step.pause is not None:
        return (
            f"pause {step.pause.duration}"
            if step.pause.duration is not None
            else "pause (until promoted)"
        )
    if kind == "setCanaryScale" and step.set_canary_scale is not None:
        s = step.set_canary_scale
        if s.replicas is not None:
            return f"setCanaryScale {s.replicas} pods"
        if s.weight is not None:
            return f"setCanaryScale {s.weight}%"
        return "setCanaryScale matchTrafficWeight"
    if kind == "analysis" and step.analysis is not None:
        return "analysis " + ", ".join(t.template_name for t in step.analysis.templates)
    if kind == "setHeaderRoute" and step.set_header_route is not None:
        return f"setHeaderRoute {step.set_header_route.name}"
    if kind == "setMirrorRoute" and step.set_mirror_route is not None:
        return f"setMirrorRoute {step.set_mirror_route.name}"
    if kind == "chaos" and step.chaos is not None:
        return f"chaos {describe_chaos(step.chaos)}"
    if kind == "experiment" and step.experiment is not None:
        return "experiment " + ", ".join(t.name for t in step.experiment.templates)
    return kind


def weight_before(steps: list[CanaryStep], index: int) -> int:
    """The weight in force at step `index`: the last setWeight before it, 0 if none."""
    weight = 0
    for step in steps[:index]:
        if step.set_weight is not None:
            weight = step.set_weight
    return weight


class Canary:
    def __init__(self, plan: Plan, strategy: CanaryStrategy) -> None:
        self.plan = plan
        self.strategy = strategy
        self.steps = strategy.steps
        self.st = plan.status
        self.world = plan.world
        self.now = plan.now
        self.total = plan.spec.replicas
        self.routed = strategy.traffic_routing is not None
        # Every weight here is out of this (Argo's maxTrafficWeight; 100 unless set).
        self.max_weight = strategy.max_weight
        self.pod_hash = template_hash(plan.spec.pod_template)
        self.revision = groups.revision_for(plan, self.pod_hash)
        self.current_name = groups.release_name(plan, self.revision)
        self.current = self.world.release(self.pod_hash)
        self.scale_down_at = groups.recorded_scale_down(plan)
        self.roles: dict[str, Role] = {}
        self.sizes: dict[str, int] = {}
        # A revision seen for the first time in this pass (its first step is announced).
        self.fresh = False

    def enter(self, idx: int) -> int:
        """Move to step `idx`, announcing it; returns idx."""
        st, plan = self.st, self.plan
        st.current_step_index = idx
        st.step_started_at = self.now
        st.last_progress_at = self.now
        plan.unpause("PauseStep")
        if idx < len(self.steps):
            plan.transition(
                "StepStarted", f"step {idx + 1}/{len(self.steps)}: {describe(self.steps[idx])}"
            )
        return idx

    def run_name(self, kind: str, step: int | None = None) -> str:
        """The name of this attempt's run of `kind` (a step's, or the background one)."""
        return analysis_run_name(self.plan.name, self.revision, kind, step, self.st.attempt)
