"""The blue/green strategy: a full-size preview group beside the active one, one write to switch.

The new revision's group comes up behind the preview service while the active service keeps
every request on the stable group. Promotion is a gate, then a switch:

    preview   scale the new group to previewReplicaCount; once it is fully available (noted in
              `blueGreen.previewReadyAt`), the preview service selects it, pre-promotion analysis
              starts, and a manual (or timed, autoPromotionSeconds) `BlueGreenPause` begins.
    gate      analysis passed, pause lifted (by promote, by the timer, or never needed):
              `blueGreen.promotedAt` is written.
    switch    the new group is grown to spec.replicas; once fully available the active service
              selects it, in one selector write. The stable group stays at full size.
    post      post-promotion analysis measures the new group under real traffic; a failure
              switches the active service straight back to the stable group, still warm.
    complete  the new group is stable; the previous one waits `scaleDownDelaySeconds` (recorded
              as `serverGroups[].scaleDownAt`) so an undo within that window is one selector
              write and no new pod.

Where traffic is comes from the cluster (the active service's selector), everything else from
status, so a pass interrupted anywhere is finished by the next one. Transitions are announced
when status changes, so a no-op pass announces nothing.

Promote follows Argo Rollouts: a plain promote lifts the pause (and accepts an inconclusive
result); it does not cut short an analysis that is still measuring. A request made before the
preview is ready waits in `status.promote` until it is. `full` skips every remaining gate:
pause and both analyses (recorded as runs in phase `Skipped`); the switch still waits for the
new group to be fully available, which no request can skip.

The strategy is split by concern: lifecycle.py (which situation; status), promotion.py (the way
forward), rollback.py (the way back), switch.py (services, replicas, completion), analysis.py
(pre- and post-promotion runs), over one per-pass context (context.py).
"""

from __future__ import annotations

from datetime import timedelta

from herdsman.api.rollout_status import AnalysisRunRef
from herdsman.engine.bluegreen import lifecycle
from herdsman.engine.bluegreen.context import BlueGreen, Kind
from herdsman.engine.plan import Plan


def decide(plan: Plan) -> None:
    strategy = plan.spec.strategy.blue_green
    assert strategy is not None
    lifecycle.run(BlueGreen(plan, strategy))


def in_flight(plan: Plan) -> bool:
    """A new revision is between preview and completion (for the progress deadline)."""
    bg = plan.status.blue_green
    return bg is not None and bg.preview_server_group is not None


def summary(plan: Plan) -> str:
    """The status message while a blue/green release is under way, for a person."""
    st = plan.status
    bg = st.blue_green
    if bg is None or bg.preview_server_group is None:
        return f"scaling {st.stable_server_group}"
    new = bg.preview_server_group
    if bg.active_server_group == new:
        run = _ref(plan, "postPromotion")
        check = f"; post-promotion analysis {run.phase.lower()}" if run else ""
        return f"{new} is active{check}; {st.stable_server_group} kept warm for rollback"
    if plan.paused_by("Inconclusive"):
        return "analysis inconclusive: promote or abort"
    if plan.paused_by("BlueGreenPause"):
        strategy = plan.spec.strategy.blue_green
        if strategy and strategy.auto_promotion_enabled and strategy.auto_promotion_seconds:
            pause = next(p for p in st.pause_conditions if p.reason == "BlueGreenPause")
            at = pause.start_time + timedelta(seconds=strategy.auto_promotion_seconds)
            return f"preview {new} ready: auto-promotion at {at.strftime('%H:%M:%SZ')}"
        return f"preview {new} ready: waiting for promotion"
    if bg.promoted_at is not None:
        return f"promoting {new}: active switches once {plan.spec.replicas} pods are available"
    if bg.preview_ready_at is not None:
        run = _ref(plan, "prePromotion")
        return f"preview {new} ready" + (
            f"; pre-promotion analysis {run.phase.lower()}" if run else ""
        )
    g = plan.world.group(new)
    return f"preview {new}: {g.available if g else 0} pods available"


def _ref(plan: Plan, kind: Kind) -> AnalysisRunRef | None:
    return next((r for r in plan.status.analysis_runs if r.kind == kind), None)


__all__ = ["decide", "in_flight", "summary"]
