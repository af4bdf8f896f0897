"""Traffic routers: exact weights, header and mirror routes in the mesh or the ingress.

Without `trafficRouting` the weight is the replica ratio and nothing here runs. With it, the
routers named there (the fields of `trafficRouting` that are set) own the weights; each router
is one module implementing `base.Router`, registered in `ROUTERS` under its field name. Adding a
router is adding a module and a line below.

Several routers at once (Argo's nginx + smi, alb + istio) move together: each is written the
same target, in `trafficRouting`'s field order, and the engine sees one combined state — a
weight only when every router holds it, so a step completes when all of them do, and an
abort's 100/0 goes to every one of them in the pass that aborts.

The doing layer uses three entry points:

    routers_for(rollout)                         the Routers, empty in replica-ratio mode
    observe_router(kube, rollout, deadline)      World.router for the engine (combined)
    writer(kube) -> TrafficWriter                the Applier's hook (write_traffic)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from herdsman.api.rollout import Rollout
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, KubeError, Path
from herdsman.engine.world import Decision, RouterState
from herdsman.traffic.alb import ALB
from herdsman.traffic.ambassador import MAPPINGS, Ambassador
from herdsman.traffic.apisix import APISIX_ROUTES, Apisix
from herdsman.traffic.appmesh import MESH_SERVICES, VIRTUAL_NODES, VIRTUAL_ROUTERS, AppMesh
from herdsman.traffic.base import Router, RouterError
from herdsman.traffic.gatewayapi import GRPC_ROUTES, HTTP_ROUTES, TCP_ROUTES, GatewayAPI
from herdsman.traffic.istio import DESTINATION_RULES, VIRTUAL_SERVICES, Istio
from herdsman.traffic.nginx import INGRESSES, Nginx
from herdsman.traffic.smi import SMI, TRAFFIC_SPLITS
from herdsman.traffic.traefik import TRAEFIK_SERVICES, Traefik

log = logging.getLogger("herdsman.traffic")

ROUTERS: dict[str, Router] = {
    r.kind: r
    for r in (
        GatewayAPI(),
        Nginx(),
        Istio(),
        SMI(),
        ALB(),
        Ambassador(),
        Apisix(),
        AppMesh(),
        Traefik(),
    )
}

# The kinds of object the routers read by name on every pass: served from watch-fed stores
# (cluster/reads.py) once one of them has been read.
READ_PATHS: tuple[Path, ...] = (
    INGRESSES,
    HTTP_ROUTES,
    GRPC_ROUTES,
    TCP_ROUTES,
    *VIRTUAL_SERVICES,
    *DESTINATION_RULES,
    TRAFFIC_SPLITS,
    *MAPPINGS,
    APISIX_ROUTES,
    *TRAEFIK_SERVICES,
    MESH_SERVICES,
    VIRTUAL_ROUTERS,
    VIRTUAL_NODES,
)

# A write computed on an object someone changed meanwhile is recomputed on the fresh object;
# this many times, then the pass fails and is retried with backoff.
CONFLICT_ATTEMPTS = 3

TrafficWriter = Callable[[Rollout, Decision, Deadline], Awaitable[None]]


def kinds_of(rollout: Rollout) -> list[str]:
    """The `trafficRouting` fields in use; empty for the replica ratio, or blue/green."""
    canary = rollout.spec.strategy.canary
    if canary is None or canary.traffic_routing is None:
        return []
    return canary.traffic_routing.kinds


def kind_of(rollout: Rollout) -> str | None:
    """The routers in use as one name (`nginx`, `nginx+smi`), or None."""
    kinds = kinds_of(rollout)
    return "+".join(kinds) if kinds else None


def routers_for(rollout: Rollout) -> list[Router]:
    return [ROUTERS[k] for k in kinds_of(rollout)]


def router_for(rollout: Rollout) -> Router | None:
    """The first router (the only one, in the common case)."""
    found = routers_for(rollout)
    return found[0] if found else None


def combine(states: list[RouterState]) -> RouterState:
    """One state for several routers: unavailable when any is; a weight only when all hold the
    same one (else None: the engine waits, as for one router in between); the routes all
    of them carry."""
    if len(states) == 1:
        return states[0]
    down = [s for s in states if not s.available]
    if down:
        return RouterState(available=False, message="; ".join(s.message for s in down))
    canary = {s.canary_weight for s in states}
    baseline = {s.baseline_weight for s in states}
    return RouterState(
        canary_weight=canary.pop() if len(canary) == 1 else None,
        baseline_weight=baseline.pop() if len(baseline) == 1 else None,
        routes=frozenset.intersection(*(s.routes for s in states)),
        http_fault=any(s.http_fault for s in states),
    )


async def observe_router(kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState | None:
    routers = routers_for(rollout)
    if not routers:
        return None
    return combine([await r.observe(kube, rollout, deadline) for r in routers])


def as_decided(rollout: Rollout, decision: Decision) -> Rollout:
    """The rollout as the routers must see it in this pass: with pingPong the stable Service is
    the one the decision's status names (a completing release swaps them in the same pass)."""
    canary = rollout.spec.strategy.canary
    now = decision.status.stable_ping_pong
    if canary is None or canary.ping_pong is None or rollout.status.stable_ping_pong == now:
        return rollout
    status = rollout.status.model_copy(update={"stable_ping_pong": now})
    return rollout.model_copy(update={"status": status})


async def write_traffic(
    kube: Kube, rollout: Rollout, decision: Decision, deadline: Deadline
) -> None:
    """Make every router hold `decision.desired.traffic`, recomputing on concurrent changes."""
    target = decision.desired.traffic
    if target is None:
        return
    rollout = as_decided(rollout, decision)
    for router in routers_for(rollout):
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                await router.apply(kube, rollout, target, deadline)
                break
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
    "READ_PATHS",
    "ROUTERS",
    "Router",
    "RouterError",
    "combine",
    "kind_of",
    "kinds_of",
    "observe_router",
    "router_for",
    "routers_for",
    "write_traffic",
    "writer",
]
