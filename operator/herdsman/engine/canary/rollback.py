"""Leaving a release: completion (the canary becomes stable), fast rollback to a group that still
exists, abort and retry, and holding still while the user paused the rollout."""

from __future__ import annotations

from datetime import timedelta

from herdsman.engine import groups
from herdsman.engine.canary import traffic
from herdsman.engine.canary.context import Canary
from herdsman.engine.groups import Targets
from herdsman.engine.world import ServerGroup
from herdsman.naming import LABEL_GROUP, baseline_name


def promote(c: Canary, stable: ServerGroup, *, reason: str, switch: bool = True) -> None:
    """All steps done (or a fast rollback): the canary takes every pod, then becomes stable.

    `switch=False`: grow, but do not make it stable (a background analysis is undecided)."""
    plan, st = c.plan, c.st
    targets = Targets()
    targets.want(c.current_name, c.total, blueprint=(c.revision, c.pod_hash, "release"))
    # With a router the canary grows to full size while the router keeps the weight it
    # holds (never more than its ready pods carry); the switch comes once it is all up.
    hold = 0
    if not c.routed:
        targets.want(stable.name, 0)
    else:
        up = c.current.available if c.current is not None else 0
        hold = traffic.carried(c, traffic.held_weight(c), up) if up > 0 else 0
        keep = traffic.stable_pods(c, hold) if c.strategy.dynamic_stable_scale else c.total
        targets.want(stable.name, keep)
    if reason == "FastRollback":
        announce_fast_rollback(c)
    traffic.assign_roles(c, stable)
    if c.strategy.baseline:
        base = baseline_name(plan.name, stable.revision)
        group = c.world.group(base)
        if c.routed and group is not None and traffic.held_baseline(c) > 0:
            # The router still sends the baseline its share: its pods stay until the
            # router holds 0 for it (written below), then it goes on the next pass.
            targets.want(base, group.replicas)
            switch = False
        else:
            targets.want(base, 0)
            c.roles.pop(base, None)
            st.baseline_server_group = None
    st.canary_weight = c.max_weight
    c.plan.stop_runs(("step",))
    if groups.reached(plan, targets) and switch:
        # The new group carries everything: it becomes stable in this very pass.
        old = stable
        st.stable_server_group = c.current_name
        st.stable_revision = c.revision
        traffic.swap_ping_pong(c)
        st.canary_server_group = None
        st.canary_weight = 0
        st.current_step_index = len(c.steps) if c.steps else None
        plan.unpause()
        c.plan.stop_runs()
        c.roles = {c.current_name: "stable", old.name: "old"}
        if c.routed and old.replicas > 0:
            # A group with no pods has nothing to keep warm (and status keeps no
            # scaleDownAt for one: promising it would be a second write next pass).
            c.scale_down_at[old.name] = groups.later(c.now, c.strategy.scale_down_delay_seconds)
        plan.transition(
            "RolloutCompleted" if reason == "Completed" else "RollbackCompleted",
            f"{c.current_name} is stable and serves 100%; {old.name} "
            + (
                "scales down in " + f"{c.strategy.scale_down_delay_seconds}s"
                if c.routed
                else "is scaled down"
            ),
        )
        final = Targets()
        final.want(c.current_name, c.total, blueprint=(c.revision, c.pod_hash, "release"))
        traffic.resize(c, final)
        traffic.services(c, stable_group=c.current_name, canary_group=c.current_name)
        traffic.set_router(c, None, 0)
        return
    traffic.resize(c, targets)
    canary_up = c.current is not None and c.current.available > 0
    traffic.services(
        c,
        stable_group=traffic.stable_serving(c, stable),
        canary_group=c.current_name if canary_up else stable.name,
    )
    # One pass later, with every canary pod up, the switch: both Services select the new
    # group and the canary weight goes to 0 (selectors are written before the router).
    traffic.set_router(c, stable, hold)


def fail(c: Canary, message: str, stable: ServerGroup) -> None:
    """Abort in this very pass: the failure is recorded and traffic goes back at once."""
    st = c.st
    st.abort = True
    st.abort_reason = message
    abort(c, stable)


def abort(c: Canary, stable: ServerGroup) -> None:
    plan, st = c.plan, c.st
    if st.aborted_at is None:
        st.aborted_at = c.now
        why = st.abort_reason or "aborted by user"
        st.message = why
        plan.transition("RolloutAborted", f"{why}; traffic back to {stable.name}", warning=True)
    st.promote = None
    plan.unpause()
    c.plan.stop_runs()
    traffic.assign_roles(c, stable)
    st.canary_weight = 0
    targets = Targets()
    targets.want(stable.name, c.total)
    delay_until = st.aborted_at + timedelta(seconds=c.strategy.abort_scale_down_delay_seconds)
    leaving = [c.current_name] + ([st.baseline_server_group] if st.baseline_server_group else [])
    for name in leaving:
        if c.routed and c.now < delay_until:
            # Weight 0 in the router already stops traffic; keep the pods warm for a while.
            c.scale_down_at[name] = delay_until
            targets.keep_until[name] = delay_until
        else:
            targets.urgent.add(name)
    targets.order.insert(0, targets.order.pop())  # stable grows first
    traffic.resize(c, targets)
    plan.desired.traffic_first = True
    # Back to the stable group — unless, by replica ratio, it has no pod up while another group
    # serves (a newer revision interrupted a final roll, then was aborted: found by the walks).
    back = traffic.serving(c, stable, stable.name)
    traffic.services(c, stable_group=back, canary_group=stable.name)
    traffic.set_router(c, stable, 0)


def retry(c: Canary) -> None:
    plan, st = c.plan, c.st
    st.aborted_at = None
    st.abort_reason = None
    st.attempt += 1
    st.analysis_runs = []
    st.message = ""
    plan.transition(
        "RolloutRetried",
        f"retrying revision {c.revision} from step 1 (attempt {st.attempt})",
    )
    c.enter(0) if c.steps else None
    st.current_step_index = 0 if c.steps else None


def announce_fast_rollback(c: Canary) -> None:
    """Once per rollback, paused or not: it skips every step."""
    st = c.st
    if st.canary_server_group != c.current_name:
        c.plan.transition(
            "FastRollback", f"rolling back to existing {c.current_name}: no steps re-run"
        )
        st.current_step_index = len(c.steps) if c.steps else None
        st.canary_server_group = c.current_name


def user_paused(c: Canary, stable: ServerGroup) -> None:
    """spec.paused: nothing moves; what runs keeps running — and a failed verdict still
    sends traffic back: a pause is no reason to keep serving a release known to be bad."""
    plan = c.plan
    idx = c.st.current_step_index
    names = [c.run_name("background")]
    if idx is not None and idx < len(c.steps) and c.steps[idx].analysis is not None:
        names.append(c.run_name("step", idx))
    for name in names:
        run = c.world.run(name)
        if run is not None and run.failed:
            fail(c, f"analysis {name} failed: {run.message or 'no message'}", stable)
            return
    plan.pause("UserPause")
    traffic.assign_roles(c, stable)
    c.sizes = {g.name: g.replicas for g in c.world.groups}
    # Nothing moves — but the stable Service never selects a group with no pod up while
    # another serves (found by the walk: paused while a final roll had emptied stable).
    serving, svc = traffic.serving(c, stable, stable.name), c.strategy.stable_service
    state = c.world.services.get(svc or "")
    if svc and state is not None and state.selector.get(LABEL_GROUP) != serving != stable.name:
        plan.desired.selectors[svc] = serving
