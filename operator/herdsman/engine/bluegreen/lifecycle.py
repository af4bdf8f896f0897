"""One blue/green pass from start to status: which situation the rollout is in, and the
status rows every pass ends with."""

from __future__ import annotations

from herdsman.api.rollout_status import Role
from herdsman.engine import groups
from herdsman.engine.bluegreen import analysis, promotion, rollback, switch
from herdsman.engine.bluegreen.context import BlueGreen
from herdsman.engine.groups import Targets
from herdsman.engine.world import ServerGroup


def run(b: BlueGreen) -> None:
    plan, st = b.plan, b.st
    track_revision(b)
    if plan.spec.paused:
        plan.pause("UserPause")
    else:
        plan.unpause("UserPause")
    stable = groups.protected_stable(b.plan, b.pod_hash)
    if stable is not None and stable.pod_hash != b.pod_hash:
        # Recorded even when it was only inferred (status lost): it is what we protect.
        st.stable_server_group = stable.name
        st.stable_revision = stable.revision
    if stable is None or stable.pod_hash == b.pod_hash:
        steady(b, stable)
    elif b.current is not None and groups.within_rollback_window(plan, b.current, stable):
        rollback.fast_rollback(b, stable)
    elif st.abort:
        rollback.abort(b, stable)
    else:
        if st.aborted_at is not None:
            rollback.retry(b)
        failed = analysis.failed_run(b)
        if plan.spec.paused and failed is not None:
            # A pause holds progress, never a rollback: a failed verdict still sends
            # traffic back to the stable group.
            rollback.fail(b, rollback.failure(b, failed), stable)
        elif plan.spec.paused:
            rollback.user_paused(b)
        else:
            promotion.progress(b, stable)
    finish(b)


def track_revision(b: BlueGreen) -> None:
    st, plan, bg = b.st, b.plan, b.bg
    if st.current_pod_hash == b.pod_hash:
        return
    if st.current_pod_hash is not None:
        note = ""
        abandoned = bg.preview_server_group
        if abandoned and abandoned != b.current_name:
            note = f"; abandoning {abandoned}"
            if b.active_now == abandoned and st.stable_server_group:
                note += f" (active service back to {st.stable_server_group})"
        plan.transition(
            "NewRevision",
            f"template changed: revision {b.revision} ({b.current_name}){note}",
        )
    groups.begin_revision(plan, b.revision, b.pod_hash)
    st.pause_conditions = [p for p in st.pause_conditions if p.reason == "UserPause"]
    bg.preview_ready_at = None
    bg.promoted_at = None


def steady(b: BlueGreen, stable: ServerGroup | None) -> None:
    plan, st, bg = b.plan, b.st, b.bg
    name = b.current_name
    if stable is None:
        groups.announce_without_stable(plan, name, "made active")
    elif b.active_now is not None and b.active_now != name:
        plan.transition(
            "Rollback",
            f"template is back to stable {name}: active service back to it from {b.active_now}",
        )
    elif bg.preview_server_group and st.abort:
        plan.transition("Rollback", f"template is back to stable {name}; preview abandoned")
    st.abort = False
    st.aborted_at = None
    st.promote = None
    plan.unpause("BlueGreenPause")
    plan.unpause("Inconclusive")
    st.stable_server_group = name
    st.stable_revision = b.revision
    bg.preview_server_group = None
    bg.preview_ready_at = None
    b.plan.stop_runs()
    # A service on another group is moved back at once (that group is being left); one
    # that selects none of ours yet waits until this group is fully available.
    switch.point_active(b, name, force=b.active_now is not None)
    switch.point(b, b.strategy.preview_service, name)
    targets = Targets()
    switch.want_current(b, targets, b.total)
    switch.resize(b, targets, active=name)


def finish(b: BlueGreen) -> None:
    plan, st, bg = b.plan, b.st, b.bg
    active = plan.desired.selectors.get(b.strategy.active_service, b.active_now)
    bg.active_server_group = active
    st.blue_green = bg
    roles: dict[str, Role] = {}
    for name in b.scale_down_at:
        roles[name] = "old"
    if bg.preview_server_group and bg.preview_server_group != active:
        roles[bg.preview_server_group] = "preview"
    if st.stable_server_group and st.stable_server_group != active:
        roles[st.stable_server_group] = "stable"
    if active:
        roles[active] = "active"
    in_use = set(roles) | {b.current_name}
    if not plan.spec.paused:
        for name in groups.garbage(plan, in_use):
            plan.desired.delete_groups.append(name)
    if not b.sizes:
        b.sizes = {g.name: g.replicas for g in b.world.groups}
    st.server_groups = groups.rows(plan, roles, b.sizes, b.scale_down_at)
    st.current_revision = b.revision
    # Canary bookkeeping has no meaning here (and may be left over from a strategy change).
    st.canary_server_group = None
    st.baseline_server_group = None
    st.current_step_index = None
    st.step = None
    # Users' traffic, all of it behind the active service: on the stable group, or on the
    # new revision's group between the switch and the post-promotion verdict.
    new_serves = active is not None and active != st.stable_server_group
    st.canary_weight = 100 if new_serves else 0
    st.weights.stable, st.weights.canary, st.weights.baseline = (
        (0, 100, 0) if new_serves else (100, 0, 0)
    )
