"""Traffic routers: exact weights, header and mirror routes in the mesh or the ingress.

Without `trafficRouting` the weight is the replica ratio and nothing here runs. With it, the
router named there (one field of `trafficRouting`) owns the weights; each router is one module
implementing `base.Router`, registered in `ROUTERS` under its field name. Adding a router is
adding a module and a line below.

The doing layer uses three entry points:

    router_for(rollout)                          the Router, or None in replica-ratio mode
    observe_router(kube, rollout, deadline)      World.router for the engine
    writer(kube) -> TrafficWriter                the Applier's hook (write_traffic)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from herdsman.api.rollout import Rollout
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, KubeError
from herdsman.engine.world import Decision, RouterState
from herdsman.traffic.base import Router, RouterError
from herdsman.traffic.gatewayapi import GatewayAPI
from herdsman.traffic.istio import Istio
from herdsman.traffic.nginx import Nginx
from herdsman.traffic.smi import SMI

log = logging.getLogger("herdsman.traffic")

ROUTERS: dict[str, Router] = {r.kind: r for r in (GatewayAPI(), Nginx(), Istio(), SMI())}

# A write computed on an object someone changed meanwhile is recomputed on the fresh object;
# this many times, then the pass fails and is retried with backoff.
CONFLICT_ATTEMPTS = 3

TrafficWriter = Callable[[Rollout, Decision, Deadline], Awaitable[None]]


def kind_of(rollout: Rollout) -> str | None:
    """The `trafficRouting` field in use, or None (replica ratio, or blue/green)."""
    canary = rollout.spec.strategy.canary
    if canary is None or canary.traffic_routing is None:
        return None
    return canary.traffic_routing.kind


def router_for(rollout: Rollout) -> Router | None:
    kind = kind_of(rollout)
    return ROUTERS[kind] if kind is not None else None


async def observe_router(kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState | None:
    router = router_for(rollout)
    if router is None:
        return None
    return await router.observe(kube, rollout, deadline)


async def write_traffic(
    kube: Kube, rollout: Rollout, decision: Decision, deadline: Deadline
) -> None:
    """Make the router hold `decision.desired.traffic`, recomputing on concurrent changes."""
    router = router_for(rollout)
    target = decision.desired.traffic
    if router is None or target is None:
        return
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            await router.apply(kube, rollout, target, deadline)
            return
        except KubeError as err:
            if not err.conflict or attempt == CONFLICT_ATTEMPTS:
                raise
            log.info(
                "%s/%s: %s router object changed while writing; recomputing (%s)",
                rollout.metadata.namespace,
                rollout.metadata.name,
                router.kind,
                err.message,
            )


def writer(kube: Kube) -> TrafficWriter:
    """The Applier's `write_traffic` hook, bound to a client."""

    async def write(rollout: Rollout, decision: Decision, deadline: Deadline) -> None:
        await write_traffic(kube, rollout, decision, deadline)

    return write


__all__ = [
    "ROUTERS",
    "Router",
    "RouterError",
    "kind_of",
    "observe_router",
    "router_for",
    "write_traffic",
    "writer",
]
