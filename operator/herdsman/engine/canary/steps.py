"""Walking the steps: a step is left when the world shows it is done (weight reached, pause
over, analysis passed, route held, promoted by the user), and several steps may be left in one
pass when each is already satisfied."""

from __future__ import annotations

from datetime import timedelta

from herdsman.api.base import duration_seconds
from herdsman.api.canary_steps import SetHeaderRoute, SetMirrorRoute
from herdsman.api.rollout import CanaryStep
from herdsman.engine import groups
from herdsman.engine.canary import analysis, chaos, experiment, rollback, traffic
from herdsman.engine.canary.context import ROUTER_RECHECK_SECONDS, Canary, describe, weight_before
from herdsman.engine.world import ServerGroup
from herdsman.naming import baseline_name


def progress(c: Canary, stable: ServerGroup) -> None:
    plan, st, steps = c.plan, c.st, c.steps
    idx = min(st.current_step_index or 0, len(steps))
    skip_current = False
    request, st.promote = st.promote, None
    if request is not None:
        if request.full:
            if idx < len(steps):
                plan.transition(
                    "PromotedFull",
                    f"promoted past every remaining step from step {idx + 1}/{len(steps)}",
                )
            idx = len(steps)
            plan.unpause()
        elif request.from_step is None or request.from_step == idx:
            skip_current = idx < len(steps)
        # A request for a step already left is stale: dropped without effect.

    if c.fresh and idx == 0 and steps:
        # The first step is a step like any other: announced, so the log tells it all.
        plan.transition("StepStarted", f"step 1/{len(steps)}: {describe(steps[0])}")
    weight = weight_before(steps, idx)
    background = analysis.background(c, stable, idx, accepted=request is not None)
    if background == "failed":
        return
    if background == "undecided":
        # Paused on an analysis that could not vouch for the canary: hold where we are.
        st.current_step_index = idx
        if idx >= len(steps):
            rollback.promote(c, stable, reason="Completed", switch=False)
        else:
            traffic.shift(c, stable, weight, steps[idx])
        return
    while idx < len(steps):
        step = steps[idx]
        if skip_current:
            skip_current = False
            plan.unpause()
            c.plan.stop_run(c.run_name("step", idx))
            plan.transition(
                "Promoted", f"step {idx + 1}/{len(steps)} ({describe(step)}) promoted by user"
            )
            idx = c.enter(idx + 1)
            continue
        if step.set_weight is not None:
            weight = step.set_weight
            st.canary_weight = weight
        if not step_done(c, step, idx, weight, stable):
            break
        # setHeaderRoute / setMirrorRoute are applied with the traffic write below: done.
        idx = c.enter(idx + 1)
    st.current_step_index = idx
    analysis.background(c, stable, idx, accepted=False)  # start it if the steps just reached it
    if st.abort:
        return
    if idx >= len(steps):
        rollback.promote(c, stable, reason="Completed")
        return
    traffic.shift(c, stable, weight, steps[idx])
    chaos.hold(c)


def step_done(c: Canary, step: CanaryStep, idx: int, weight: int, stable: ServerGroup) -> bool:
    """A step is done when every part of it is, each checked only once the ones before it are
    done: the scale or weight reached, then its routes seen held, then its action (a pause over,
    an experiment or analysis passed, chaos over). So a pause counts down, and an analysis
    judges, only once what the step set is in place.

    Argo's controller lets the first part alone decide a combined step (a pause, then the scale,
    ...), which would leave an analysis beside a setCanaryScale unjudged; Herdsman waits for
    all of them (lint warns about the difference).

    The last step also waits for the background analysis's fault to have been and gone (see
    api/chaos.py), checked first: its own parts (an analysis passing, announced once) are
    looked at only when leaving it completes the rollout."""
    if idx == len(c.steps) - 1 and not chaos.background_done(c):
        return False
    if (step.set_weight is not None or step.set_canary_scale is not None) and not weight_reached(
        c, stable, weight, step
    ):
        return False
    routes: list[SetHeaderRoute | SetMirrorRoute] = [
        r for r in (step.set_header_route, step.set_mirror_route) if r is not None
    ]
    if not all(route_held(c, r.name) for r in routes):
        return False
    if step.pause is not None and not pause_over(c, step, idx):
        return False
    if step.experiment is not None and not experiment.experiment_passed(c, step, idx, stable):
        return False
    if step.analysis is not None and not analysis.analysis_passed(c, step, idx, stable):
        return False
    return step.chaos is None or chaos.step_done(c, step)


def route_held(c: Canary, name: str) -> bool:
    """A header or mirror route step is done once the router is seen to hold it (or, for an
    empty match, no longer to hold it). It is written with this pass's traffic write."""
    router = c.world.router
    if not c.routed or router is None:
        return True
    headers, mirrors = traffic.routes(c)
    wanted = name in {r.name for r in headers} | {r.name for r in mirrors}
    if (name in router.routes) == wanted:
        return True
    c.plan.due_in(ROUTER_RECHECK_SECONDS)
    return False


def weight_reached(c: Canary, stable: ServerGroup, weight: int, step: CanaryStep) -> bool:
    targets = traffic.replica_targets(c, stable, weight, step)
    # replicaProgressThreshold: the canary (and baseline) count as scaled up with that share.
    base = baseline_name(c.plan.name, stable.revision) if c.strategy.baseline else None
    enough = {
        name: traffic.threshold(c, want)
        for name, want in targets.replicas.items()
        if name in (c.current_name, base)
    }
    if not groups.reached(c.plan, targets, enough):
        return False
    if not c.routed:
        return True
    # With a router the step is done when the router holds the weight, not when it is
    # merely written: the weight is sent in the pass that finds the pods ready and read
    # back on the next one.
    sent = traffic.sendable(c, stable, weight)
    if sent != traffic.effective(c, weight):
        return False
    router = c.world.router
    if router is None or (
        router.canary_weight == sent and router.baseline_weight == traffic.baseline_share(c, sent)
    ):
        return True
    c.plan.due_in(ROUTER_RECHECK_SECONDS)
    return False


def pause_over(c: Canary, step: CanaryStep, idx: int) -> bool:
    assert step.pause is not None
    plan, st = c.plan, c.st
    started = st.step_started_at or c.now
    seconds = duration_seconds(step.pause.duration)
    if seconds is not None and c.now >= started + timedelta(seconds=seconds):
        return True
    plan.pause("PauseStep")
    if seconds is not None:
        plan.due_at(started + timedelta(seconds=seconds))
    return False
