"""One canary pass from start to status: which situation the rollout is in (steady, aborted,
rolling back, progressing, paused), and the status rows every pass ends with."""

from __future__ import annotations

from herdsman.engine import groups, weights
from herdsman.engine.canary import chaos, rollback, steps, traffic
from herdsman.engine.canary.context import Canary
from herdsman.engine.groups import Targets
from herdsman.engine.world import ServerGroup


def run(c: Canary) -> None:
    if not c.plan.spec.paused:
        c.plan.unpause("UserPause")  # resumed: the pause the user asked for is over
    track_revision(c)
    stable = groups.protected_stable(c.plan, c.pod_hash)
    if stable is not None and stable.pod_hash != c.pod_hash:
        # Inferred after a lost status, or recorded before: either way it is what we protect.
        c.st.stable_server_group, c.st.stable_revision = stable.name, stable.revision
    if stable is None or stable.pod_hash == c.pod_hash:
        steady(c, stable)
    elif c.st.abort:
        # Checked before a fast rollback too: an abort then keeps the stable it protects.
        rollback.abort(c, stable)
    elif c.current is not None and groups.within_rollback_window(c.plan, c.current, stable):
        c.st.promote = None  # a rollback skips every step already: nothing to promote
        # Retried after an abort: the abort is over here too, or a later pass would clear it
        # with no news (found by the walk: an abort during a fast rollback, then retry).
        c.st.aborted_at = None
        c.st.abort_reason = None
        if c.plan.spec.paused:
            # kubectl herdsman pause holds a rollback too: nothing moves until resume.
            rollback.announce_fast_rollback(c)
            rollback.user_paused(c, stable)
        else:
            rollback.promote(c, stable, reason="FastRollback")
    else:
        if c.st.aborted_at is not None:
            rollback.retry(c)
        if c.plan.spec.paused:
            rollback.user_paused(c, stable)
        else:
            steps.progress(c, stable)
    chaos.settle(c)
    finish(c)


def track_revision(c: Canary) -> None:
    st, plan = c.st, c.plan
    if st.current_pod_hash == c.pod_hash:
        return
    c.fresh = True
    if st.current_pod_hash is not None:
        abandoned = st.canary_server_group
        note = (
            f"; abandoning canary {abandoned}" if abandoned and abandoned != c.current_name else ""
        )
        plan.transition(
            "NewRevision",
            f"template changed: revision {c.revision} ({c.current_name}){note}",
        )
    groups.begin_revision(plan, c.revision, c.pod_hash)
    st.current_step_index = 0 if c.steps else None
    st.canary_weight = 0
    st.pause_conditions = []


def steady(c: Canary, stable: ServerGroup | None) -> None:
    plan, st = c.plan, c.st
    if stable is None:
        groups.announce_without_stable(plan, c.current_name, "made stable without steps")
    elif st.canary_server_group and st.abort:
        plan.transition("Rollback", f"template is back to stable {stable.name}; canary abandoned")
    st.abort = False
    st.aborted_at = None
    st.abort_reason = None
    st.promote = None
    st.pause_conditions = [p for p in st.pause_conditions if p.reason == "UserPause"]
    st.stable_server_group = c.current_name
    st.stable_revision = c.revision
    st.canary_server_group = None
    st.baseline_server_group = None
    st.canary_weight = 0
    st.current_step_index = len(c.steps) if c.steps else None
    c.plan.stop_runs()
    targets = Targets()
    targets.want(c.current_name, c.total, blueprint=(c.revision, c.pod_hash, "release"))
    c.roles[c.current_name] = "stable"
    traffic.resize(c, targets)
    traffic.services(
        c,
        stable_group=traffic.serving(c, c.current, c.current_name),
        canary_group=c.current_name,
    )
    # With a router: 0% to the canary and no header or mirror routes, every pass (one read,
    # no write when it already holds that) — a completion cut short is finished here.
    traffic.set_router(c, None, 0)


def finish(c: Canary) -> None:
    plan, st = c.plan, c.st
    in_use = set(c.roles) | {c.current_name}
    if not c.plan.spec.paused:
        for name in groups.garbage(plan, in_use):
            plan.desired.delete_groups.append(name)
    st.server_groups = groups.rows(plan, c.roles, c.sizes, c.scale_down_at)
    st.current_revision = c.revision
    n = len(c.steps)
    idx = st.current_step_index
    # 1-based for people: "2/5" is the second step; "5/5" with phase Healthy is done.
    st.step = f"{min(idx + 1, n)}/{n}" if idx is not None and n else None
    canary = c.world.group(st.canary_server_group)
    base = c.world.group(st.baseline_server_group)
    if c.routed:
        # What the router holds once this pass's write lands (or, when nothing is written,
        # what it was seen holding).
        target = plan.desired.traffic
        router = c.world.router
        if target is not None:
            w = target.canary_weight if target.canary_group else 0
            b = target.baseline_weight
        elif router is not None and router.canary_weight is not None:
            w, b = router.canary_weight, router.baseline_weight or 0
        else:
            w, b = plan.old.weights.canary, plan.old.weights.baseline
        top = c.max_weight
        w = max(0, min(top, w))
        b = max(0, min(top - w, b))
        st.weights.canary, st.weights.baseline, st.weights.stable = w, b, top - w - b
    else:
        # In effect once this pass's writes land: a group scaled down serves no more pods
        # than it keeps (so an abort reports 0% at once); growth counts when it is available.
        def serving(g: ServerGroup | None) -> int:
            return 0 if g is None else min(g.available, c.sizes.get(g.name, g.replicas))

        shares = {
            "stable": sum(serving(g) for g in c.world.groups if g not in (canary, base)),
            "canary": serving(canary),
            "baseline": serving(base),
        }
        split = weights.traffic_weights(shares)
        st.weights.stable, st.weights.canary, st.weights.baseline = (
            split["stable"],
            split["canary"],
            split["baseline"],
        )
