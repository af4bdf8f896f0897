"""The chaos step: keep a share of the canary's pods down for the step's duration.

Pure like the rest of the engine: the fault is a size for the canary group, recorded in
`status.chaos` when it starts. `hold` runs after the traffic write of a pass that is at a chaos
step inside its window, and lowers the canary's size by the pods killed; `settle` runs at the end
of every canary pass and marks the fault removed when this pass did not hold it (the step is over,
the rollout was aborted or paused, a new revision came). Nothing else needs undoing: a pass that
does not hold the fault sizes the canary as its step asks, which brings the pods back — after an
operator restart too, since the window is in status and compared with the clock.

An httpFault is not a size but a route: `hold` puts the fault recorded in status on this pass's
traffic target, and the Istio router writes the canary's fault route for it; any target without
it removes the route. A pass that writes no traffic (the rollout paused by the user) but sees
the router still holding the route writes the weights the router holds, without it (`clear`).
So whichever pass comes after the fault's end — the step's, an abort's, a pause's, the first of
a restarted operator — leaves the VirtualService without the fault, from status and the clock.

The judge is the background analysis (see api/chaos.py): the step itself only waits for its
duration, and counts as measuring meanwhile, so the progress deadline does not fire.

The background analysis's chaos option (`analysis.chaos`) is the same fault with another
window: `hold` injects it on the first pass that finds the walk at or past its startingStep,
running, with no fault recorded for this revision and attempt, and keeps it from `status.chaos`
(`source: background`) until its own `endsAt`, whatever step the walk is at; `settle` removes it
the same way. `background_done` holds the last step until the fault has been and gone, so the
rollout never completes, making the faulted canary stable, under it or without it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from herdsman.api.base import duration_seconds
from herdsman.api.chaos import (
    BackgroundChaos,
    ChaosFault,
    ChaosStatus,
    describe_fault,
    fault_headers,
)
from herdsman.api.rollout import CanaryStep
from herdsman.engine.canary import traffic
from herdsman.engine.canary.context import Canary
from herdsman.engine.world import TrafficTarget


def pods_to_kill(percent: int, pods: int) -> int:
    """`percent` of `pods`, rounded up (a chaos step that kills nobody proves nothing)."""
    if pods <= 0:
        return 0
    return min(pods, -(-max(0, percent) * pods // 100))


def window_end(c: Canary, step: CanaryStep) -> datetime:
    assert step.chaos is not None
    started = c.st.step_started_at or c.now
    return started + timedelta(seconds=duration_seconds(step.chaos.duration) or 0.0)


def step_done(c: Canary, step: CanaryStep) -> bool:
    """Over once its duration has passed; a failure found meanwhile aborts elsewhere."""
    ends = window_end(c, step)
    if c.now >= ends:
        return True
    c.plan.measuring = True
    c.plan.due_at(ends)
    return False


def _active_step(c: Canary) -> tuple[int, CanaryStep] | None:
    """The chaos step whose fault this pass may hold: the current step, inside its window,
    with the rollout running (not aborted, paused by anyone, or being promoted)."""
    st = c.st
    idx = st.current_step_index
    if idx is None or idx >= len(c.steps) or st.abort or c.plan.spec.paused:
        return None
    if st.pause_conditions:
        return None
    step = c.steps[idx]
    if step.chaos is None or c.now >= window_end(c, step):
        return None
    return idx, step


def background_chaos(c: Canary) -> BackgroundChaos | None:
    analysis = c.strategy.analysis
    return analysis.chaos if analysis is not None else None


def background_start(c: Canary) -> int:
    """The step on whose entry the background fault starts (default: the analysis's start)."""
    analysis = c.strategy.analysis
    assert analysis is not None
    assert analysis.chaos is not None
    if analysis.chaos.starting_step is not None:
        return analysis.chaos.starting_step
    return analysis.starting_step or 0


def _walking(c: Canary) -> bool:
    """The walk is on a step and running: not aborted, not paused by a person or a verdict (a
    timed pause step is the walk's own wait, and keeps a background fault)."""
    st = c.st
    idx = st.current_step_index
    if idx is None or idx >= len(c.steps) or st.abort or c.plan.spec.paused:
        return False
    return all(p.reason == "PauseStep" for p in st.pause_conditions)


def _background_record(c: Canary) -> ChaosStatus | None:
    """The background fault of this revision's current background analysis run, if any."""
    ch = c.st.chaos
    if (
        ch is not None
        and ch.source == "background"
        and ch.revision == c.revision
        and ch.attempt == c.st.attempt
    ):
        return ch
    return None


def _background_holds(c: Canary, ch: ChaosStatus) -> bool:
    return (
        background_chaos(c) is not None
        and _walking(c)
        and _background_record(c) is ch
        and ch.phase == "Injected"
        and c.now < ch.ends_at
    )


def background_done(c: Canary) -> bool:
    """Whether the rollout may complete: the background fault (if the spec has one) was
    injected for this run and is over. Otherwise the last step waits; `hold` injects it in
    this pass if it has not yet."""
    if background_chaos(c) is None:
        return True
    ch = _background_record(c)
    if ch is not None and (ch.phase == "Removed" or c.now >= ch.ends_at):
        return True
    c.plan.measuring = True
    if ch is not None:
        c.plan.due_at(ch.ends_at)
    return False


def _new_record(
    c: Canary, fault: ChaosFault, idx: int, started: datetime, ends: datetime
) -> ChaosStatus:
    """The fault as status keeps it, announced: an httpFault with its headers resolved, a
    killPods with the canary's pods counted now."""
    st, plan = c.st, c.plan
    background = isinstance(fault, BackgroundChaos)
    where = (
        f"background analysis chaos at step {idx + 1}/{len(c.steps)}"
        if background
        else f"step {idx + 1}/{len(c.steps)}"
    )
    common: dict[str, object] = {
        "step_index": idx,
        "source": "background" if background else "step",
        "attempt": st.attempt if background else None,
        "revision": c.revision,
        "server_group": c.current_name,
        "started_at": started,
        "ends_at": ends,
    }
    if fault.http_fault is not None:
        headers = fault_headers(fault.http_fault, plan.name)
        ch = ChaosStatus.model_validate(
            {
                **common,
                "action": "httpFault",
                "http_fault": fault.http_fault.model_copy(update={"headers": headers}),
            }
        )
        tagged = ", ".join(f"{k}: {v}" for k, v in headers.items())
        plan.transition(
            "ChaosInjected",
            f"{where}: httpFault: {describe_fault(fault.http_fault)} on requests"
            f" with {tagged}, routed to canary {c.current_name} only, for {fault.duration}",
            warning=True,
        )
        return ch
    full = c.sizes.get(c.current_name, c.current.replicas if c.current else 0)
    killed = pods_to_kill(fault.percent or 0, full)
    ch = ChaosStatus.model_validate(
        {
            **common,
            "action": fault.action,
            "percent": fault.percent or 0,
            "canary_pods": full,
            "pods_killed": killed,
        }
    )
    plan.transition(
        "ChaosInjected",
        f"{where}: killPods: {killed} of {full} pods of canary"
        f" {c.current_name} down for {fault.duration}",
        warning=True,
    )
    return ch


def hold(c: Canary) -> None:
    """Inject (first pass of the fault's window) or keep (later passes) the fault on the
    canary group: a chaos step's, or the background analysis's."""
    active = _active_step(c)
    if active is None:
        _hold_background(c)
        return
    idx, step = active
    assert step.chaos is not None
    st = c.st
    started = st.step_started_at or c.now
    ch = st.chaos
    mine = (
        ch is not None
        and ch.source == "step"
        and ch.step_index == idx
        and ch.revision == c.revision
        and ch.started_at == started
    )
    if not mine:
        ch = _new_record(c, step.chaos, idx, started, window_end(c, step))
        st.chaos = ch
    assert ch is not None
    if ch.phase != "Injected":
        return  # removed early (a pause): not injected again within the same step
    _apply(c, ch)


def _hold_background(c: Canary) -> None:
    fault = background_chaos(c)
    if fault is None or not _walking(c):
        return
    st = c.st
    idx = st.current_step_index
    assert idx is not None
    ch = _background_record(c)
    if ch is None:
        if idx < background_start(c):
            return
        # Once per background run: injected now, its window in status from here on.
        seconds = duration_seconds(fault.duration) or 0.0
        ch = _new_record(c, fault, idx, c.now, c.now + timedelta(seconds=seconds))
        st.chaos = ch
    if ch.phase != "Injected" or c.now >= ch.ends_at:
        return  # over (or ended early by a pause): not injected again in this run
    c.plan.measuring = True  # the judge is measuring the canary under the fault
    _apply(c, ch)


def _apply(c: Canary, ch: ChaosStatus) -> None:
    """The fault recorded in status on this pass's writes: a smaller canary, or its route."""
    plan = c.plan
    if ch.action == "httpFault":
        # The fault as status recorded it, on the target this pass writes anyway.
        target = plan.desired.traffic
        if target is not None and target.canary_group and ch.http_fault is not None:
            plan.desired.traffic = dataclasses.replace(target, http_fault=ch.http_fault)
        plan.due_at(ch.ends_at)
        return
    size = max(0, ch.canary_pods - ch.pods_killed)
    c.sizes[c.current_name] = size
    group = c.current
    if group is not None and group.replicas != size:
        plan.desired.scale[c.current_name] = size
    else:
        plan.desired.scale.pop(c.current_name, None)
    plan.due_at(ch.ends_at)


def clear(c: Canary) -> None:
    """A pass that writes no traffic (a user's pause) while the router still carries a fault
    route writes what the router holds, without the route: a pause ends the fault too, and a
    route no status explains (a lost status, a restart) does not outlive the pass that sees it."""
    router = c.world.router
    if not c.routed or router is None or not router.http_fault:
        return
    if c.plan.desired.traffic is not None:
        return  # this pass writes a target: with the fault only where `hold` put it
    st = c.st
    headers, mirrors = traffic.routes(c)
    held = router.canary_weight
    c.plan.desired.traffic = TrafficTarget(
        canary_weight=held if held is not None else c.plan.old.weights.canary,
        canary_group=st.canary_server_group,
        stable_group=st.stable_server_group or c.current_name,
        header_routes=() if st.abort else headers,
        mirror_routes=() if st.abort else mirrors,
        baseline_weight=traffic.held_baseline(c),
    )


def _paused_for(c: Canary, ch: ChaosStatus) -> bool:
    """Paused in a way that ends this fault: any pause condition ends a step's (a chaos step
    has none of its own); a background fault outlives the walk's timed pause steps."""
    conditions = c.st.pause_conditions
    if ch.source == "step":
        return bool(conditions)
    return any(p.reason != "PauseStep" for p in conditions)


def settle(c: Canary) -> None:
    """Mark the fault removed when this pass no longer holds it, saying why."""
    clear(c)
    ch = c.st.chaos
    if ch is None or ch.phase != "Injected":
        return
    st = c.st
    if ch.source == "background":
        if _background_holds(c, ch):
            return
    else:
        active = _active_step(c)
        if active is not None and active[0] == ch.step_index and ch.revision == c.revision:
            return
    idx = st.current_step_index
    if st.abort:
        why = "rollout aborted"
    elif ch.revision != c.revision or st.current_pod_hash != c.pod_hash:
        why = "new revision"
    elif c.plan.spec.paused or _paused_for(c, ch):
        why = "rollout paused"
    elif c.now >= ch.ends_at:
        why = "duration over"
    elif ch.source == "step":
        why = "step left"
    elif idx is None or idx >= len(c.steps):
        why = "rollout promoted"
    elif ch.attempt != st.attempt:
        why = "new analysis run"
    else:
        why = "background chaos removed from the spec"
    ch.phase = "Removed"
    ch.removed_at = c.now
    ch.removed_reason = why
    if ch.action == "httpFault":
        what = "its fault route leaves the VirtualService"
    else:
        what = f"its {ch.pods_killed} pods come back"
    where = f"step {ch.step_index + 1}/{len(c.steps)}"
    if ch.source == "background":
        where = f"background analysis chaos (from {where})"
    c.plan.transition(
        "ChaosRemoved", f"{where}: {ch.action} on {ch.server_group} ended ({why}); {what}"
    )
