"""Checks on chaos steps' httpFault the API server cannot make (see api/chaos.py).

The CRD already refuses an httpFault without trafficRouting.istio and percentages above 100;
these name the step, and cover what needs judgement: a delay no shorter than the step itself
(its requests would be judged after the fault is gone), VirtualServices with no HTTP route to
carry the canary's fault route, a managed route whose generated name would be the fault route's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from herdsman.api.base import duration_seconds
from herdsman.api.rollout import CanaryStrategy

if TYPE_CHECKING:
    from herdsman.engine.validation import Problem

# The fault route's name after `herdsman-<rollout>-` (traffic/istio.py imports it from here).
CHAOS_ROUTE = "chaos-fault"


def http_fault_problems(canary: CanaryStrategy, prefix: str) -> list[Problem]:
    from herdsman.engine.validation import Problem

    found: list[Problem] = []
    routing = canary.traffic_routing
    for i, step in enumerate(canary.steps):
        fault = step.chaos.http_fault if step.chaos is not None else None
        if fault is None:
            continue
        where = f"{prefix}.steps[{i}].chaos.httpFault"
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
        assert step.chaos is not None
        if fault.delay is not None:
            try:
                delay = duration_seconds(fault.delay.fixed_delay) or 0.0
                lasting = duration_seconds(step.chaos.duration) or 0.0
            except ValueError:
                continue  # the CRD's pattern refuses it first
            if delay <= 0 or delay >= lasting:
                found.append(
                    Problem(
                        f"{where}.delay.fixedDelay",
                        "Invalid value",
                        "must be more than 0 and less than the step's duration"
                        f" ({step.chaos.duration}): a delayed request must end inside the fault",
                        f'"{fault.delay.fixed_delay}"',
                    )
                )
    return found
