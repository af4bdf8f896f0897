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
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from herdsman.api.base import duration_seconds
from herdsman.api.chaos import ChaosStatus, describe_fault, fault_headers
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


def hold(c: Canary) -> None:
    """Inject (first pass of the step) or keep (later passes) the fault on the canary group."""
    active = _active_step(c)
    if active is None:
        return
    idx, step = active
    assert step.chaos is not None
    st, plan = c.st, c.plan
    started = st.step_started_at or c.now
    ch = st.chaos
    mine = (
        ch is not None
        and ch.step_index == idx
        and ch.revision == c.revision
        and ch.started_at == started
    )
    if not mine and step.chaos.http_fault is not None:
        fault = step.chaos.http_fault
        headers = fault_headers(fault, c.plan.name)
        ch = ChaosStatus(
            step_index=idx,
            revision=c.revision,
            server_group=c.current_name,
            action="httpFault",
            http_fault=fault.model_copy(update={"headers": headers}),
            started_at=started,
            ends_at=window_end(c, step),
        )
        st.chaos = ch
        tagged = ", ".join(f"{k}: {v}" for k, v in headers.items())
        plan.transition(
            "ChaosInjected",
            f"step {idx + 1}/{len(c.steps)}: httpFault: {describe_fault(fault)} on requests"
            f" with {tagged}, routed to canary {c.current_name} only, for {step.chaos.duration}",
            warning=True,
        )
    elif not mine:
        full = c.sizes.get(c.current_name, c.current.replicas if c.current else 0)
        killed = pods_to_kill(step.chaos.percent or 0, full)
        ch = ChaosStatus(
            step_index=idx,
            revision=c.revision,
            server_group=c.current_name,
            action=step.chaos.action,
            percent=step.chaos.percent or 0,
            canary_pods=full,
            pods_killed=killed,
            started_at=started,
            ends_at=window_end(c, step),
        )
        st.chaos = ch
        plan.transition(
            "ChaosInjected",
            f"step {idx + 1}/{len(c.steps)}: killPods: {killed} of {full} pods of canary"
            f" {c.current_name} down for {step.chaos.duration}",
            warning=True,
        )
    assert ch is not None
    if ch.phase != "Injected":
        return  # removed early (a pause): not injected again within the same step
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


def settle(c: Canary) -> None:
    """Mark the fault removed when this pass no longer holds it, saying why."""
    clear(c)
    ch = c.st.chaos
    if ch is None or ch.phase != "Injected":
        return
    st = c.st
    active = _active_step(c)
    if active is not None and active[0] == ch.step_index and ch.revision == c.revision:
        return
    if st.abort:
        why = "rollout aborted"
    elif ch.revision != c.revision or st.current_pod_hash != c.pod_hash:
        why = "new revision"
    elif c.plan.spec.paused or st.pause_conditions:
        why = "rollout paused"
    elif c.now >= ch.ends_at:
        why = "duration over"
    else:
        why = "step left"
    ch.phase = "Removed"
    ch.removed_at = c.now
    ch.removed_reason = why
    if ch.action == "httpFault":
        what = "its fault route leaves the VirtualService"
    else:
        what = f"its {ch.pods_killed} pods come back"
    c.plan.transition(
        "ChaosRemoved",
        f"step {ch.step_index + 1}/{len(c.steps)}: {ch.action} on {ch.server_group} ended"
        f" ({why}); {what}",
    )
