"""The way forward: preview, the promotion gate (pause, pre-promotion analysis), the switch and
post-promotion analysis."""

from __future__ import annotations

from datetime import timedelta

from herdsman.api.analysis_ref import RolloutAnalysis
from herdsman.engine.bluegreen import analysis, rollback, switch
from herdsman.engine.bluegreen.context import SKIPPED, WORDS, BlueGreen, Kind, Verdict
from herdsman.engine.groups import Targets
from herdsman.engine.world import ServerGroup


def progress(b: BlueGreen, stable: ServerGroup) -> None:
    b.bg.preview_server_group = b.current_name
    if b.active_now == b.current_name:
        post(b, stable)
    elif b.st.promote is not None and b.st.promote.full:
        promote_full(b)
        promoting(b, stable)
    elif b.bg.promoted_at is not None:
        promoting(b, stable)
    else:
        preview(b, stable)


def preview_size(b: BlueGreen) -> int:
    wanted = b.strategy.preview_replica_count
    return b.total if wanted is None else min(wanted, b.total)


def preview(b: BlueGreen, stable: ServerGroup) -> None:
    plan, st, bg, strategy = b.plan, b.st, b.bg, b.strategy
    new = b.current_name
    size = preview_size(b)
    if bg.preview_ready_at is None and b.ready(new, size):
        bg.preview_ready_at = b.now
        manual = not strategy.auto_promotion_enabled
        timed = strategy.auto_promotion_enabled and strategy.auto_promotion_seconds is not None
        if manual or timed:
            plan.pause("BlueGreenPause")
        then = (
            "; waiting for promotion"
            if manual
            else f"; auto-promotion in {strategy.auto_promotion_seconds}s"
            if timed
            else ""
        )
        plan.transition("PreviewReady", f"preview {new} is ready with {size} pods{then}")
    keep_pause_honest(b)

    verdict: Verdict = "passed"
    if bg.preview_ready_at is not None:
        verdict = analysis.follow(b, "prePromotion", strategy.pre_promotion_analysis)
    if verdict == "failed":
        rollback.fail(b, rollback.failure(b, "prePromotion"), stable)
        return
    if st.promote is not None and bg.preview_ready_at is not None:
        st.promote = None
        lifted = plan.paused_by("BlueGreenPause") or verdict == "inconclusive"
        plan.unpause("BlueGreenPause")
        plan.unpause("Inconclusive")
        if verdict == "inconclusive":
            verdict = "passed"
        if lifted:
            plan.transition("Promoted", f"preview {new} promoted by user")
    # A request made before the preview is ready waits for it in status.promote.

    if (
        bg.preview_ready_at is not None
        and verdict == "passed"
        and not plan.paused_by("BlueGreenPause")
        and not plan.paused_by("Inconclusive")
    ):
        bg.promoted_at = b.now
        promoting(b, stable)
        return
    switch.point_active(b, stable.name, force=True)
    switch.point(
        b, strategy.preview_service, new if bg.preview_ready_at is not None else stable.name
    )
    targets = Targets()
    targets.want(stable.name, b.total)
    switch.want_current(b, targets, size)
    switch.resize(b, targets, active=stable.name)


def keep_pause_honest(b: BlueGreen) -> None:
    """The BlueGreenPause ends by promote, by its timer, or when the spec no longer asks."""
    plan, strategy = b.plan, b.strategy
    pause = next((p for p in b.st.pause_conditions if p.reason == "BlueGreenPause"), None)
    if pause is None or not strategy.auto_promotion_enabled:
        return
    if strategy.auto_promotion_seconds is None:
        plan.unpause("BlueGreenPause")
        return
    until = pause.start_time + timedelta(seconds=strategy.auto_promotion_seconds)
    if b.now >= until:
        plan.unpause("BlueGreenPause")
        plan.transition(
            "AutoPromoted",
            f"preview {b.current_name} promoted after {strategy.auto_promotion_seconds}s",
        )
    else:
        plan.due_at(until)


def promote_full(b: BlueGreen) -> None:
    """Skip every remaining gate; the switch still waits for a fully available group."""
    plan, st, bg = b.plan, b.st, b.bg
    st.promote = None
    plan.unpause("BlueGreenPause")
    plan.unpause("Inconclusive")
    skipped = []
    kinds: tuple[tuple[Kind, RolloutAnalysis | None], ...] = (
        ("prePromotion", b.strategy.pre_promotion_analysis),
        ("postPromotion", b.strategy.post_promotion_analysis),
    )
    for kind, spec in kinds:
        if spec is None:
            continue
        name = analysis.run_name(b, kind)
        run = b.world.run(name)
        if run is not None and run.phase == "Successful":
            continue
        if run is not None and not run.done and not run.terminated:
            plan.desired.terminate_runs.append(name)
        b.plan.record_run(name, kind, SKIPPED)
        skipped.append(WORDS[kind])
    if bg.promoted_at is None:
        bg.promoted_at = b.now
    what = f"; skipping {' and '.join(skipped)} analysis" if skipped else ""
    plan.transition("PromotedFull", f"{b.current_name} promoted fully by user{what}")


def promoting(b: BlueGreen, stable: ServerGroup) -> None:
    """The gate is passed: grow the new group to full size, then switch in one write."""
    new = b.current_name
    if b.ready(new, b.total):
        switch.point_active(b, new, force=False)
        b.active_now = new
        post(b, stable)
        return
    previewed = b.bg.preview_ready_at is not None
    switch.point_active(b, stable.name, force=True)
    switch.point(b, b.strategy.preview_service, new if previewed else stable.name)
    targets = Targets()
    targets.want(stable.name, b.total)
    switch.want_current(b, targets, b.total)
    switch.resize(b, targets, active=stable.name)


def post(b: BlueGreen, stable: ServerGroup) -> None:
    """The new group serves; the stable one stays at full size until the verdict."""
    plan, st, bg = b.plan, b.st, b.bg
    new = b.current_name
    old = plan.old.blue_green
    if old is None or old.active_server_group != new:
        follows = b.strategy.post_promotion_analysis is not None
        plan.transition(
            "ActiveSwitched",
            f"active service {b.strategy.active_service} selects {new};"
            f" {stable.name} kept warm" + ("; post-promotion analysis next" if follows else ""),
        )
    if bg.promoted_at is None:
        bg.promoted_at = b.now  # switched by a pass whose status was never written
    verdict = analysis.follow(b, "postPromotion", b.strategy.post_promotion_analysis)
    if verdict == "failed":
        rollback.fail(b, rollback.failure(b, "postPromotion"), stable)
        return
    request, st.promote = st.promote, None
    if request is not None and request.full and verdict != "passed":
        promote_full(b)
        verdict = "passed"
    elif request is not None and verdict == "inconclusive":
        plan.unpause("Inconclusive")
        plan.transition("Promoted", f"inconclusive post-promotion analysis of {new} accepted")
        verdict = "passed"
    # A plain promote while post-promotion analysis measures has nothing to lift: dropped.
    if verdict == "passed":
        switch.complete(b, stable, reason="RolloutCompleted")
        return
    switch.point_active(b, new, force=False)
    switch.point(b, b.strategy.preview_service, new)
    targets = Targets()
    switch.want_current(b, targets, b.total)
    targets.want(stable.name, b.total)
    switch.resize(b, targets, active=new)
