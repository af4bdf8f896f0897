"""Chaos steps: a failure injected into the canary group only, while it is judged.

Netflix's ChAP runs a chaos experiment inside the canary: the failure goes to the experiment
group alone and its metrics are compared with an untouched control. Here the experiment group
is the canary and the control the baseline (or the stable group): a `chaos` step kills a share
of the canary's pods and keeps them down for `duration`, while the rollout's *background
analysis* judges the canary against the baseline. The background analysis is the judge on
purpose: it runs across the chaos step without a gap (an `analysis` step would start after the
fault ended, or would need the fault to outlive its step), and a failure it finds aborts in the
same pass, which ends the fault with the canary. So a chaos step without background analysis is
refused by the API server (`spec.strategy.canary.analysis`), and one placed before the analysis's
`startingStep` is held as InvalidSpec.

The fault is a smaller canary ReplicaSet, never a change to the stable or baseline group: the
ReplicaSet controller deletes the pods, and they stay down while the step lasts. Everything about
the fault is in `status.chaos`, so an operator that restarts finds it, and a pass that finds the
step over, the rollout paused or aborted simply sizes the canary as its step asks again: the
fault is undone by the same write that would have sized the canary anyway.

`httpFault` (with trafficRouting.istio only) injects HTTP delays and aborts into the canary's
requests through Istio's VirtualService `fault`. Istio applies a fault to a whole HTTP route,
before the route's weighted destinations are chosen, so a fault on the managed route would hit
the stable's requests too. The canary gets a route of its own instead, as Netflix's ChAP scopes
an experiment by request: a route put first, with the managed routes' matches narrowed by
`headers` (by default `x-herdsman-chaos: <rollout>`), sending every request it matches to the
canary alone, with the fault. Requests without the header keep the managed routes, whose weights
and behaviour are never touched; the client, edge or load generator tags the requests that take
part in the experiment. The fault is in `status.chaos.httpFault`, and the router's desired
VirtualService holds the route only while the engine asks for it, so the route goes with the step,
an abort, a pause or a restarted operator's first pass, like every other generated route.

The same fault can be an option of the background analysis instead of a step of its own:
`spec.strategy.canary.analysis.chaos` (action, percent, httpFault, duration, and `startingStep`).
A step stops the walk for its duration; the background option runs *beside* the steps, so the
canary is judged under the fault while the walk goes on (a timed pause, a setWeight with a
router, header routes...). It is injected when the walk enters `startingStep` (0-based, like the
analysis's own; default: the analysis's `startingStep`, so the judge is already running), lasts
`duration` (at most 1h), and is injected once per background analysis run: once per revision,
and again after a retry or a promote past an Inconclusive verdict, which start a new run to
judge it. The rollout does not complete while the fault is in force, nor before it was injected:
leaving the last step waits for the fault's end, so the judge always sees the whole fault. A
killPods fault keeps the canary smaller on purpose, so a step that scales the canary waits for
the fault to end before it counts as reached. A user's pause or an Inconclusive verdict ends the
fault early, as for a step, and it is not injected again within the same run; a timed `pause`
step does not (it is the walk's own wait). One fault at a time: a rollout has chaos steps or the
background option, not both. In status it is the step's fault with `source: background` (and
the `attempt` whose run judges it): the same undo on abort, pause, new revision or restart, the
same metrics, Events and plugin rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from herdsman.api.base import MAX_LIST, ApiModel, Duration, cel, validations

ChaosAction = Literal["killPods", "httpFault"]
ChaosPhase = Literal["Injected", "Removed"]
ChaosSource = Literal["step", "background"]

# The longest background fault: it holds the rollout's completion while it lasts, and a chaos
# experiment is minutes, not hours (a step's fault is bounded by its own step instead).
MAX_BACKGROUND_CHAOS_SECONDS = 3600

# The header a request carries to take part in an httpFault experiment when the step names none;
# its value is the rollout's name, so two rollouts behind one VirtualService never share it.
CHAOS_HEADER = "x-herdsman-chaos"


class FaultPercentage(ApiModel):
    """Istio's `percentage`: the share of the requests the fault applies to."""

    value: float = Field(..., ge=0, le=100, description="Percent of the requests (0-100).")


class FaultDelay(ApiModel):
    """Delay requests before forwarding them to the canary (Istio's `fault.delay`)."""

    fixed_delay: Duration = Field(
        ..., description="How long each delayed request waits (e.g. 500ms, 2s)."
    )
    percentage: FaultPercentage


class FaultAbort(ApiModel):
    """Answer requests with an error instead of forwarding them (Istio's `fault.abort`)."""

    http_status: int = Field(..., ge=200, le=599, description="The status answered, e.g. 503.")
    percentage: FaultPercentage


class HttpFault(ApiModel):
    """HTTP faults on the canary's requests only, through an Istio route of its own."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.delay) || has(self.abort)", "httpFault needs delay, abort or both")
        )
    )

    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Requests carrying these headers (exact values) go to the canary with the"
        f" fault; default `{CHAOS_HEADER}: <rollout name>`. Others keep the weighted routes.",
        json_schema_extra={"maxProperties": 16},
    )
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class ChaosFault(ApiModel):
    """The failure injected into the canary group: what and for how long (a chaos step's, or
    the background analysis's chaos option)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.action != 'killPods' || has(self.percent)",
                "killPods needs percent: the share of the canary's pods killed",
                ".percent",
            ),
            cel(
                "self.action != 'httpFault' || !has(self.percent)",
                "percent is for killPods; an httpFault's shares are"
                " httpFault.delay.percentage and httpFault.abort.percentage",
                ".percent",
            ),
            cel(
                "(self.action == 'httpFault') == has(self.httpFault)",
                "httpFault is set with action: httpFault, and only then",
                ".httpFault",
            ),
        )
    )

    action: ChaosAction = Field(
        ...,
        description="killPods: keep `percent` of the canary's pods down for `duration`;"
        " httpFault: Istio delays and aborts on the canary's requests (trafficRouting.istio).",
    )
    percent: int | None = Field(
        None, ge=1, le=100, description="killPods: share of the canary's pods killed (rounded up)."
    )
    http_fault: HttpFault | None = Field(
        None, description="httpFault: the delay and abort injected (Istio's HTTPFaultInjection)."
    )
    duration: Duration = Field(
        ..., description="How long the failure lasts (e.g. 30s, 2m); the step ends with it."
    )


class ChaosStep(ChaosFault):
    """Inject a failure into the canary group for `duration`, judged by background analysis."""


class BackgroundChaos(ChaosFault):
    """A failure injected into the canary while the background analysis judges it, beside the
    steps: from `startingStep`, for `duration`, once per background analysis run."""

    duration: Duration = Field(
        ...,
        description="How long the failure lasts (e.g. 30s, 2m; more than 0, at most 1h). The"
        " steps go on meanwhile; the rollout does not complete before it is over.",
    )
    starting_step: int | None = Field(
        None,
        ge=0,
        le=MAX_LIST,
        description="Index (0-based) of the step on whose entry the fault is injected; at least"
        " the analysis's startingStep (its default), and below the number of steps.",
    )


class ChaosStatus(ApiModel):
    """The fault injected by the current (or last) chaos step, or by the background analysis's
    chaos option: what, where, until when."""

    step_index: int = Field(
        ..., description="The chaos step; for source background, the step it was injected at."
    )
    source: ChaosSource = Field(
        "step",
        description="step: a chaos step's fault; background: spec.strategy.canary.analysis.chaos.",
    )
    attempt: int | None = Field(
        None,
        description="background: the attempt (status.attempt) whose background analysis run"
        " judges the fault; one fault per run.",
    )
    revision: int
    server_group: str
    action: ChaosAction
    percent: int = 0
    http_fault: HttpFault | None = Field(
        None, description="httpFault: the fault the canary's route carries, headers resolved."
    )
    canary_pods: int = Field(0, description="The canary's pods before the fault.")
    pods_killed: int = 0
    started_at: datetime
    ends_at: datetime
    phase: ChaosPhase = "Injected"
    removed_at: datetime | None = None
    removed_reason: str | None = Field(
        None, description="Why the fault ended: duration over, aborted, paused, new revision."
    )


def fault_headers(fault: HttpFault, rollout: str) -> dict[str, str]:
    """The headers that send a request to the canary's faulted route."""
    return dict(fault.headers) if fault.headers else {CHAOS_HEADER: rollout}


def describe_fault(fault: HttpFault) -> str:
    """`abort 503 on 10%, delay 500ms on 50%` — for logs, Events and the plugin."""
    parts = []
    if fault.abort is not None:
        parts.append(f"abort {fault.abort.http_status} on {fault.abort.percentage.value:g}%")
    if fault.delay is not None:
        parts.append(f"delay {fault.delay.fixed_delay} on {fault.delay.percentage.value:g}%")
    return ", ".join(parts)


def describe_chaos(step: ChaosFault) -> str:
    """A chaos step in a few words: `killPods 50% for 30s`, `httpFault abort 503 on 10% ...`."""
    if step.http_fault is not None:
        return f"httpFault {describe_fault(step.http_fault)} for {step.duration}"
    return f"{step.action} {step.percent}% for {step.duration}"
