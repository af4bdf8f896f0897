"""The one entry point of the engine: (rollout, observed world, now) -> Decision.

Cross-strategy rules live here, applied after the strategy has spoken: semantic validation
(which holds everything), restarts, the progress deadline, the phase, conditions and totals.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from herdsman.api.rollout import Rollout, RolloutStatus
from herdsman.engine import bluegreen, canary, cost, validation
from herdsman.engine.plan import Plan
from herdsman.engine.weights import Limits, limits
from herdsman.engine.world import Decision, World

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INVALID_RECHECK_SECONDS = 30.0


def decide(rollout: Rollout, world: World, now: datetime) -> Decision:
    plan = Plan(rollout, world, now)
    found = validation.problems(rollout, world)
    if found:
        return _invalid(plan, found)
    if plan.has_condition("InvalidSpec"):
        plan.transition("SpecValid", "spec is valid again; resuming")
    plan.drop_condition("InvalidSpec")

    strategy = rollout.spec.strategy
    if strategy.canary is not None:
        # Left over from a blue/green past (a strategy change is only allowed at rest).
        plan.status.blue_green = None
        canary.decide(plan)
    else:
        bluegreen.decide(plan)
    _restart(plan)
    _progress_deadline(plan)
    _phase(plan)
    _totals(plan)
    cost.account(plan)
    return plan.decision()


def settled(rollout: Rollout, decision: Decision, world: World, now: datetime) -> bool:
    """Whether the pass after `decision` would find nothing to do, if nothing but the status
    it writes changes: it writes nothing else (a routed canary's weights count as no write when
    the router already holds them), and deciding again on that status, in the same world at
    the same instant, gives the same status, no write, nothing to announce and the same next
    due time.

    Why: the operator watches its own Rollouts, so every status write comes back as a watch
    event and queues a pass. When this holds, that pass is a no-op and the runtime skips it
    (reconcile.py). It does not always hold: some changes are left to the pass after (a group
    still listed as old is deleted by the next one), and those passes run as before.
    """
    if not decision.desired.writes_nothing(world.router):
        return False
    wire = decision.status.to_wire()
    # Through the wire, as the watch event will bring it: what the next pass would parse.
    again = decide(
        rollout.model_copy(update={"status": RolloutStatus.model_validate(wire)}), world, now
    )
    return (
        again.desired.writes_nothing(world.router)
        and not again.transitions
        and again.requeue_after == decision.requeue_after
        and again.status.to_wire() == wire
    )


def _invalid(plan: Plan, found: list[str]) -> Decision:
    """Hold: report the problem, touch nothing that runs."""
    message = "; ".join(found)
    st = plan.status
    if not plan.has_condition("InvalidSpec") or st.message != f"InvalidSpec: {message}":
        plan.transition("InvalidSpec", message, warning=True)
    plan.condition("InvalidSpec", True, "InvalidSpec", message)
    st.phase = "Degraded"
    st.message = f"InvalidSpec: {message}"
    # Services and templates are not watched; look again in a while.
    plan.due_in(INVALID_RECHECK_SECONDS)
    return plan.decision()


def _restart(plan: Plan) -> None:
    """Replace pods older than spec.restartAt, a few at a time, never below the floor."""
    st, spec = plan.status, plan.spec
    wanted = spec.restart_at
    if wanted is None or (st.restarted_at is not None and st.restarted_at >= wanted):
        return
    if wanted > plan.now:
        plan.due_at(wanted)
        return
    stale = sorted(
        (p for p in plan.world.pods if p.created_at < wanted), key=lambda p: p.created_at
    )
    if not stale:
        st.restarted_at = wanted
        plan.transition("Restarted", f"every pod started after {wanted.isoformat()}")
        return
    lim = _limits(plan)
    serving = plan.world.groups
    active = _active_group(plan)
    if active is not None:
        # Blue/green: only the active group carries traffic; other groups' pods go first, free.
        serving = tuple(g for g in serving if g.name == active)
        stale.sort(key=lambda p: p.group == active)
    available = sum(g.available for g in serving)
    asked = sum(g.replicas for g in serving)
    budget = available - lim.floor
    if budget <= 0 and available >= asked:
        budget = 1  # maxUnavailable 0 still allows one pod at a time once everything is up
    if active is not None:
        budget = max(0, budget) + sum(p.group != active for p in stale)
    plan.desired.delete_pods.extend(p.name for p in stale[: max(0, budget)])
    plan.due_in(5)


def _progress_deadline(plan: Plan) -> None:
    """Degraded (and optionally aborted) when replicas stop moving for progressDeadlineSeconds.

    Only waiting on pods counts: pauses and analyses take the time they are given.
    """
    st, spec = plan.status, plan.spec
    before = {(r.name, r.replicas, r.available_replicas) for r in plan.old.server_groups}
    seen = {(g.name, g.replicas, g.available) for g in plan.world.groups}
    stable = plan.world.group(st.stable_server_group)
    settled = (
        st.canary_server_group is None and stable is not None and stable.available >= spec.replicas
    )
    if spec.strategy.blue_green is not None:
        # Blue/green waits on pods whenever a group has fewer available than asked of it.
        asked = {g.name: g.replicas for g in plan.world.groups}
        asked.update(plan.desired.scale)
        asked.update({g.name: g.replicas for g in plan.desired.create_groups})
        have = {g.name: g.available for g in plan.world.groups}
        settled = all(have.get(name, 0) >= n for name, n in asked.items()) and all(
            g.settled for g in plan.world.groups
        )
    waiting = not (st.abort or spec.paused or st.pause_conditions or settled or plan.measuring)
    if not waiting:
        # The clock only runs while we wait on pods; a stored time would rewrite status forever.
        st.last_progress_at = None
        plan.drop_condition("ProgressDeadlineExceeded")
        return
    if before != seen or st.last_progress_at is None:
        st.last_progress_at = plan.now
        plan.drop_condition("ProgressDeadlineExceeded")
        plan.due_in(spec.progress_deadline_seconds)
        return
    deadline = st.last_progress_at + timedelta(seconds=spec.progress_deadline_seconds)
    if plan.now < deadline:
        plan.due_at(deadline)
        return
    if not plan.has_condition("ProgressDeadlineExceeded"):
        what = f"no progress for {spec.progress_deadline_seconds}s"
        suffix = "; aborting" if spec.progress_deadline_abort else ""
        plan.transition("ProgressDeadlineExceeded", what + suffix, warning=True)
        plan.condition("ProgressDeadlineExceeded", True, "ProgressDeadlineExceeded", what)
        if spec.progress_deadline_abort and (
            st.canary_server_group is not None or bluegreen.in_flight(plan)
        ):
            st.abort = True
            st.abort_reason = f"progress deadline exceeded: {what}"
            st.message = st.abort_reason
            plan.due_in(0)


def _phase(plan: Plan) -> None:
    st, spec = plan.status, plan.spec
    stable = plan.world.group(st.stable_server_group)
    idx, n = st.current_step_index, len(spec.strategy.canary.steps) if spec.strategy.canary else 0
    where = f" at step {min(idx + 1, n)}/{n}" if idx is not None and n else ""
    if st.abort:
        st.phase, st.message = "Degraded", st.message or "aborted"
        plan.condition("Progressing", False, "RolloutAborted", st.message)
    elif plan.has_condition("ProgressDeadlineExceeded"):
        st.phase = "Degraded"
        st.message = f"progress deadline exceeded{where}"
        plan.condition("Progressing", False, "ProgressDeadlineExceeded", st.message)
    elif spec.paused or st.pause_conditions:
        reasons = {p.reason for p in st.pause_conditions}
        if spec.paused or "UserPause" in reasons:
            why = "paused by user"
        elif "Inconclusive" in reasons:
            why = "analysis inconclusive: promote or abort"
        elif spec.strategy.blue_green is not None:
            why = bluegreen.summary(plan)
        else:
            why = "paused"
        st.phase, st.message = "Paused", f"{why}{where}"
        plan.condition("Progressing", True, "RolloutPaused", st.message)
    elif (
        st.canary_server_group is None
        and stable is not None
        and stable.available >= spec.replicas
        and stable.replicas == spec.replicas
        and stable.settled
        and (st.blue_green is None or st.blue_green.preview_server_group is None)
    ):
        if plan.old.phase != "Healthy":
            plan.transition(
                "RolloutHealthy",
                f"{stable.name} serves 100% with {stable.available}/{spec.replicas} pods available",
            )
        st.phase = "Healthy"
        st.message = ""
        plan.condition("Progressing", True, "NewReplicaSetAvailable", f"{stable.name} is available")
    else:
        st.phase = "Progressing"
        if spec.strategy.blue_green is not None:
            st.message = bluegreen.summary(plan)
        elif st.canary_server_group:
            out_of = spec.strategy.canary.max_weight if spec.strategy.canary else 100
            weight = f"{st.canary_weight}%" if out_of == 100 else f"{st.canary_weight}/{out_of}"
            st.message = f"canary {st.canary_server_group} at {weight}{where}"
        else:
            st.message = f"scaling {st.stable_server_group}"
        plan.condition("Progressing", True, "ReplicaSetUpdated", st.message)
    plan.condition(
        "Paused",
        st.phase == "Paused",
        "Paused" if st.phase == "Paused" else "Running",
        st.message if st.phase == "Paused" else "",
    )
    plan.condition("Healthy", st.phase == "Healthy", st.phase or "Unknown", st.message)
    lim = _limits(plan)
    active = _active_group(plan)
    available = sum(g.available for g in plan.world.groups if active is None or g.name == active)
    plan.condition(
        "Available",
        available >= lim.floor,
        "MinimumReplicasAvailable" if available >= lim.floor else "MinimumReplicasUnavailable",
        f"{available} available, {lim.floor} required",
    )


def _totals(plan: Plan) -> None:
    st, spec = plan.status, plan.spec
    st.replicas = sum(row.replicas for row in st.server_groups)
    st.ready_replicas = sum(g.ready for g in plan.world.groups)
    st.available_replicas = sum(g.available for g in plan.world.groups)
    current = plan.world.release(st.current_pod_hash or "")
    st.updated_replicas = current.replicas if current else 0
    st.selector = str(spec.selector) if spec.selector is not None else ""


def _active_group(plan: Plan) -> str | None:
    """Blue/green: the group the active service selects (None for canary, or before any)."""
    bg = plan.status.blue_green
    if plan.spec.strategy.blue_green is None or bg is None:
        return None
    return bg.active_server_group


def _limits(plan: Plan) -> Limits:
    canary = plan.spec.strategy.canary
    if canary is not None:
        return limits(plan.spec.replicas, canary.max_surge, canary.max_unavailable)
    # Blue/green: maxUnavailable bounds a restart (Argo's meaning); absent, one pod at a time.
    blue_green = plan.spec.strategy.blue_green
    unavailable = blue_green.max_unavailable if blue_green is not None else None
    return limits(plan.spec.replicas, "100%", unavailable if unavailable is not None else 0)
