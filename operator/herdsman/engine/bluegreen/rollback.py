"""The way back: fast rollback to a group that still exists, abort, retry, and holding still
while the user paused the rollout."""

from __future__ import annotations

from datetime import timedelta

from herdsman.engine.bluegreen import analysis, switch
from herdsman.engine.bluegreen.context import WORDS, BlueGreen, Kind
from herdsman.engine.groups import Targets
from herdsman.engine.world import ServerGroup


def fast_rollback(b: BlueGreen, stable: ServerGroup) -> None:
    """Back to an older group that still exists: no pause, no analysis, one switch."""
    plan, st, bg = b.plan, b.st, b.bg
    name = b.current_name
    if bg.preview_server_group != name:
        plan.transition("FastRollback", f"rolling back to existing {name}: no pause or analysis")
    bg.preview_server_group = name
    st.promote = None
    plan.unpause("BlueGreenPause")
    plan.unpause("Inconclusive")
    b.plan.stop_runs()
    if b.ready(name, b.total):
        switch.point_active(b, name, force=False)
        b.active_now = name
        bg.promoted_at = b.now
        switch.complete(b, stable, reason="RollbackCompleted")
        return
    switch.point_active(b, stable.name, force=True)
    switch.point(b, b.strategy.preview_service, stable.name)
    targets = Targets()
    targets.want(stable.name, b.total)
    switch.want_current(b, targets, b.total)
    switch.resize(b, targets, active=stable.name)


def failure(b: BlueGreen, kind: Kind) -> str:
    name = analysis.run_name(b, kind)
    run = b.world.run(name)
    phase = run.phase.lower() if run else "failed"
    detail = run.message if run and run.message else "no message"
    return f"analysis {name} ({WORDS[kind]}) {phase}: {detail}"


def fail(b: BlueGreen, message: str, stable: ServerGroup) -> None:
    """Abort in this very pass: recorded, and traffic back to the stable group at once."""
    b.st.abort = True
    abort(b, stable, why=message)


def abort(b: BlueGreen, stable: ServerGroup, *, why: str | None = None) -> None:
    plan, st, bg = b.plan, b.st, b.bg
    new = b.current_name
    bg.preview_server_group = new
    if st.aborted_at is None:
        st.aborted_at = b.now
        if why is None:
            # decide() aborts on an exceeded progress deadline and says so in the message.
            deadline = st.message.startswith("progress deadline exceeded")
            why = st.message if deadline else "aborted by user"
        st.message = why
        where = "back to" if b.active_now == new else "stays on"
        plan.transition(
            "RolloutAborted", f"{why}; active service {where} {stable.name}", warning=True
        )
    st.promote = None
    plan.unpause("BlueGreenPause")
    plan.unpause("Inconclusive")
    bg.promoted_at = None
    bg.preview_ready_at = None
    b.plan.stop_runs()
    if b.active_now != stable.name:
        plan.desired.traffic_first = True
    switch.point_active(b, stable.name, force=True)
    switch.point(b, b.strategy.preview_service, stable.name)
    until = st.aborted_at + timedelta(seconds=b.strategy.abort_scale_down_delay_seconds)
    b.leaving.pop(new, None)
    if b.now < until and b.current is not None and b.current.replicas > 0:
        b.scale_down_at[new] = until
    else:
        b.scale_down_at.pop(new, None)
    targets = Targets()
    targets.want(stable.name, b.total)
    switch.resize(b, targets, active=stable.name)


def retry(b: BlueGreen) -> None:
    plan, st, bg = b.plan, b.st, b.bg
    st.aborted_at = None
    st.attempt += 1
    st.analysis_runs = []
    st.message = ""
    bg.preview_ready_at = None
    bg.promoted_at = None
    b.scale_down_at.pop(b.current_name, None)
    plan.transition("RolloutRetried", f"retrying revision {b.revision} (attempt {st.attempt})")


def user_paused(b: BlueGreen) -> None:
    """spec.paused: nothing moves; what runs keeps running."""
    b.bg.preview_server_group = b.current_name
    b.sizes = {g.name: g.replicas for g in b.world.groups}
