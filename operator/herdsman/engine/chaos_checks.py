"""Checks on chaos faults the API server cannot make (see api/chaos.py): a chaos step's, and the
background analysis's chaos option (`analysis.chaos`).

The CRD already refuses an httpFault without trafficRouting.istio and percentages above 100;
these name the step, and cover what needs judgement: a delay no shorter than the step itself
(its requests would be judged after the fault is gone), VirtualServices with no HTTP route to
carry the canary's fault route, a managed route whose generated name would be the fault route's;
and for the background option, a duration of 0 or over an hour, a startingStep the walk never
enters (the CRD refuses these too; checked here so that an object admitted some other way is held
as InvalidSpec instead of waiting forever at its last step for a fault that never comes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from herdsman.api.base import Duration, duration_seconds
from herdsman.api.chaos import MAX_BACKGROUND_CHAOS_SECONDS, HttpFault
from herdsman.api.rollout import CanaryStrategy

if TYPE_CHECKING:
    from herdsman.engine.validation import Problem

# The fault route's name after `herdsman-<rollout>-` (traffic/istio.py imports it from here).
CHAOS_ROUTE = "chaos-fault"


def http_fault_problems(canary: CanaryStrategy, prefix: str) -> list[Problem]:
    from herdsman.engine.validation import Problem

    found: list[Problem] = []
    routing = canary.traffic_routing
    faults: list[tuple[str, HttpFault, Duration, str]] = []
    for i, step in enumerate(canary.steps):
        if step.chaos is not None and step.chaos.http_fault is not None:
            where = f"{prefix}.steps[{i}].chaos.httpFault"
            faults.append((where, step.chaos.http_fault, step.chaos.duration, "step's"))
    background = canary.analysis.chaos if canary.analysis is not None else None
    if background is not None and background.http_fault is not None:
        where = f"{prefix}.analysis.chaos.httpFault"
        faults.append((where, background.http_fault, background.duration, "fault's"))
    for where, fault, duration, whose in faults:
        if routing is None or routing.istio is None:
            found.append(
                Problem(
                    where,
                    "Forbidden",
                    "needs trafficRouting.istio: Istio's VirtualService carries the fault on a"
                    " route to the canary only",
                )
            )
            continue
        if all(
            not v.routes and (v.tls_routes or v.tcp_routes)
            for v in routing.istio.all_virtual_services
        ):
            found.append(
                Problem(
                    where,
                    "Forbidden",
                    "needs HTTP routes in the VirtualService: only tlsRoutes/tcpRoutes are named",
                )
            )
        if any(r.name == CHAOS_ROUTE for r in routing.managed_routes):
            found.append(
                Problem(
                    f"{prefix}.trafficRouting.managedRoutes",
                    "Invalid value",
                    f"{CHAOS_ROUTE!r} is the name of the route a chaos httpFault generates",
                    f'"{CHAOS_ROUTE}"',
                )
            )
        if fault.delay is not None:
            try:
                delay = duration_seconds(fault.delay.fixed_delay) or 0.0
                lasting = duration_seconds(duration) or 0.0
            except ValueError:
                continue  # the CRD's pattern refuses it first
            if delay <= 0 or delay >= lasting:
                found.append(
                    Problem(
                        f"{where}.delay.fixedDelay",
                        "Invalid value",
                        f"must be more than 0 and less than the {whose} duration"
                        f" ({duration}): a delayed request must end inside the fault",
                        f'"{fault.delay.fixed_delay}"',
                    )
                )
    return found


def background_chaos_problems(canary: CanaryStrategy, prefix: str) -> list[Problem]:
    """analysis.chaos: a window that is bounded and a step the walk enters."""
    from herdsman.engine.validation import Problem

    analysis = canary.analysis
    if analysis is None or analysis.chaos is None:
        return []
    chaos = analysis.chaos
    where = f"{prefix}.analysis.chaos"
    found: list[Problem] = []
    try:
        seconds = duration_seconds(chaos.duration) or 0.0
    except ValueError:
        seconds = None  # the CRD's pattern refuses it first
    if seconds is not None and not 0 < seconds <= MAX_BACKGROUND_CHAOS_SECONDS:
        found.append(
            Problem(
                f"{where}.duration",
                "Invalid value",
                "must be more than 0 and at most 1h: the rollout does not complete while the"
                " background fault lasts",
                f'"{chaos.duration}"' if isinstance(chaos.duration, str) else str(chaos.duration),
            )
        )
    floor = analysis.starting_step or 0
    start = chaos.starting_step if chaos.starting_step is not None else floor
    if start < floor or start >= len(canary.steps):
        found.append(
            Problem(
                f"{where}.startingStep",
                "Invalid value",
                f"the fault starts on entering a step the background analysis runs at: from"
                f" {floor} (analysis.startingStep) to {len(canary.steps) - 1} (the last step)",
                str(start),
            )
        )
    if any(step.chaos is not None for step in canary.steps):
        found.append(
            Problem(
                where,
                "Forbidden",
                "analysis.chaos and chaos steps do not go together: one fault at a time",
            )
        )
    return found
