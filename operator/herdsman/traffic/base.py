"""The one interface every traffic router implements, and the helpers they share.

A router turns a `TrafficTarget` (the canary's weight, and the header and mirror routes in force)
into the state of one object in the cluster — an HTTPRoute, a VirtualService, an Ingress, a
TrafficSplit — and reads back what that object holds. Two calls, both idempotent:

    observe(kube, rollout, deadline) -> RouterState   is the object there, what does it hold?
    apply(kube, rollout, target, deadline)            make it hold exactly `target`

`apply` also does the lifecycle: what a router generated for a release (an NGINX canary Ingress,
a header-route rule) is removed as soon as the target no longer asks for it, so there is no
separate cleanup call to forget. A router that cannot carry part of a target (header routes on
NGINX) raises `RouterError` rather than dropping it: validation refuses such specs first, and a
silent no-op would be a rollout that believes something untrue.

Objects the user owns are patched with JSON patches computed from a diff (`json_patch`), so only
the fields that change are written, and every patch carries the resourceVersion it was computed
from: a concurrent edit makes it fail with 409 and the write is recomputed on fresh data
(`herdsman.traffic.write_traffic`), never applied over someone else's change.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Protocol

from herdsman.api.base import API_VERSION
from herdsman.api.canary_steps import SetHeaderRoute, SetMirrorRoute
from herdsman.api.rollout import CanaryStrategy, Rollout
from herdsman.api.routing import ping_pong_roles
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import JSON_PATCH, Kube, KubeError, Path
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.naming import LABEL_MANAGED, LABEL_ROLLOUT, MANAGED_BY, label_value

FIELD = "spec.strategy.canary.trafficRouting"


class RouterError(Exception):
    """The router cannot carry this target on this object (a capability or a shape it lacks)."""


class Router(Protocol):
    """One traffic router. `kind` is its field name under `trafficRouting`."""

    kind: ClassVar[str]
    # Whether `setHeaderRoute` / `setMirrorRoute` steps can be carried (validation reads these).
    header_routes: ClassVar[bool]
    mirror_routes: ClassVar[bool]
    # Whether a third share, for the baseline Service, can be carried (`baseline: true`).
    baseline_share: ClassVar[bool]

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        """What the router's object holds now; `available=False` (with the reason) when the
        kind is not installed or the object the spec names does not exist."""
        ...

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        """Make the object hold exactly `target`: weights, header routes, mirror routes, and
        nothing generated for a release that `target` no longer asks for. Idempotent: no write
        when the object already holds it. Raises KubeError(404) when the object is gone."""
        ...


# --- the rollout's side -------------------------------------------------------------------------


def strategy(rollout: Rollout) -> CanaryStrategy:
    canary = rollout.spec.strategy.canary
    if canary is None or canary.traffic_routing is None:
        raise RouterError(f"{rollout.metadata.name}: no trafficRouting in the canary strategy")
    return canary


def services(rollout: Rollout, *, prefer_ping_pong: bool = False) -> tuple[str, str]:
    """(stable Service, canary Service) a router splits between.

    With pingPong, the pair whose roles status.stablePingPong names — for a router that
    prefers it (ALB, as Argo), or when stableService/canaryService are not set. The CRD asks
    for one of the two forms whenever trafficRouting is set.
    """
    canary = strategy(rollout)
    pp = canary.ping_pong
    if pp is not None and (
        prefer_ping_pong or not (canary.stable_service and canary.canary_service)
    ):
        return ping_pong_roles(pp, rollout.status.stable_ping_pong)
    if not canary.stable_service or not canary.canary_service:
        raise RouterError("trafficRouting needs both stableService and canaryService")
    return canary.stable_service, canary.canary_service


def baseline_service(rollout: Rollout) -> str | None:
    """The baseline Service a router gives the baseline's share to; None without one."""
    canary = strategy(rollout)
    return canary.baseline_service if canary.baseline else None


def split(rollout: Rollout, canary_weight: int, baseline_weight: int = 0) -> tuple[int, int, int]:
    """(stable, canary, baseline) percentages, clamped so they sum to 100.

    A baseline share for a rollout without a baselineService is an error, not a share quietly
    handed to stable: the judge would compare a baseline that serves nothing.
    """
    canary = max(0, min(100, canary_weight))
    baseline = max(0, min(100 - canary, baseline_weight))
    if baseline and baseline_service(rollout) is None:
        raise RouterError(f"a baseline share of {baseline}% but no baselineService to carry it")
    return 100 - canary - baseline, canary, baseline


def namespace(rollout: Rollout) -> str:
    return rollout.metadata.namespace or "default"


def route_order(rollout: Rollout) -> list[str]:
    """Managed route names in precedence order (the first wins where matches overlap)."""
    routing = strategy(rollout).traffic_routing
    return [r.name for r in routing.managed_routes] if routing else []


def generated_prefix(rollout: Rollout) -> str:
    """Names of the routes a router adds to a user's object: `herdsman-<rollout>-<route>`.

    The rollout's name is in it so that two Rollouts sharing one HTTPRoute or VirtualService
    never touch each other's routes; dots become dashes (rule names are DNS labels).
    """
    return f"herdsman-{rollout.metadata.name.replace('.', '-')}-"


def ordered_routes(
    rollout: Rollout, target: TrafficTarget
) -> list[tuple[str, SetHeaderRoute | SetMirrorRoute]]:
    """The target's header and mirror routes, in managedRoutes order."""
    found: dict[str, SetHeaderRoute | SetMirrorRoute] = {}
    for route in (*target.header_routes, *target.mirror_routes):
        if not isinstance(route, (SetHeaderRoute, SetMirrorRoute)):
            raise RouterError(f"not a header or mirror route: {route!r}")
        found[route.name] = route
    order = route_order(rollout)
    return sorted(
        found.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])
    )


def refuse_routes(router: str, target: TrafficTarget) -> None:
    """For routers without header/mirror support: a target asking for them is an error."""
    if target.header_routes or target.mirror_routes:
        names = [r.name for r in (*target.header_routes, *target.mirror_routes)]
        raise RouterError(f"the {router} router cannot carry header or mirror routes ({names})")


def exact_state(
    rows: list[tuple[int, int, int]], routes: frozenset[str] = frozenset()
) -> RouterState:
    """The state for (stable, canary, baseline) weight rows, one per managed route: the canary
    and baseline shares when every row says the same and sums to 100, else None for both."""
    if not rows or any(sum(row) != 100 for row in rows) or len({row[1:] for row in rows}) != 1:
        return RouterState(canary_weight=None, baseline_weight=None, routes=routes)
    return RouterState(canary_weight=rows[0][1], baseline_weight=rows[0][2], routes=routes)


# --- objects the operator creates ----------------------------------------------------------------


def owner_reference(rollout: Rollout) -> dict[str, Any]:
    """The reference cluster/apply.py puts on server groups (the garbage collector removes the
    object with its Rollout). Not imported from there: cluster.observe imports this package."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "name": rollout.metadata.name,
        "uid": rollout.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(rollout: Rollout) -> dict[str, str]:
    return {LABEL_ROLLOUT: label_value(rollout.metadata.name), LABEL_MANAGED: MANAGED_BY}


def owned_by(obj: dict[str, Any], rollout: Rollout) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("kind") == "Rollout" and r.get("uid") == rollout.metadata.uid for r in refs)


# --- reading -------------------------------------------------------------------------------------


async def served(kube: Kube, path: Path, deadline: Deadline) -> bool:
    """Whether the API server serves `path`'s kind (its CRD is installed and established)."""
    listing = await kube.get(f"/apis/{path.group}/{path.version}", deadline=deadline)
    if listing is None:
        return False
    return any(r.get("name") == path.plural for r in listing.get("resources") or [])


def not_installed(path: Path, what: str, field: str) -> RouterState:
    return RouterState(
        available=False,
        message=f"{field}: the {what} kind ({path.group}/{path.version}) is not installed in"
        " this cluster; install its CRDs or change trafficRouting",
    )


async def missing(
    kube: Kube, path: Path, what: str, ns: str, name: str, field: str, deadline: Deadline
) -> RouterState:
    """The state for an object that was not found: its kind missing, or just the object."""
    if not await served(kube, path, deadline):
        return not_installed(path, what, field)
    return RouterState(
        available=False, message=f"{field}: {what} {name!r} not found in namespace {ns!r}"
    )


async def get_first(
    kube: Kube, paths: list[Path], ns: str, name: str, deadline: Deadline
) -> tuple[Path, dict[str, Any] | None]:
    """The object at the first API version that has it (Istio serves v1 and v1beta1)."""
    for path in paths:
        body = await kube.get(path.url(ns, name), deadline=deadline)
        if body is not None:
            return path, body
    return paths[0], None


# --- writing -------------------------------------------------------------------------------------


def _pointer(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def json_patch(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """RFC 6902 operations turning `old` into `new`, touching only what differs.

    Objects are diffed key by key; lists of the same length element by element (a weight in
    rules[2].backendRefs[1] is one `replace`); a list whose length changes is replaced whole.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{_pointer(key)}"})
        for key, value in new.items():
            where = f"{path}/{_pointer(key)}"
            if key not in old:
                ops.append({"op": "add", "path": where, "value": value})
            else:
                ops += json_patch(old[key], value, where)
        return ops
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            op
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for op in json_patch(a, b, f"{path}/{i}")
        ]
    if old == new and type(old) is type(new):
        return []
    return [{"op": "replace", "path": path, "value": new}]


async def patch_spec(
    kube: Kube, url: str, body: dict[str, Any], spec: dict[str, Any], deadline: Deadline
) -> bool:
    """Patch `body`'s spec into `spec`, guarded by the resourceVersion it was read at.

    Returns whether anything was written. A concurrent change fails the patch with 409.
    """
    ops = json_patch(body.get("spec") or {}, spec, "/spec")
    if not ops:
        return False
    guard = {
        "op": "replace",
        "path": "/metadata/resourceVersion",
        "value": body["metadata"]["resourceVersion"],
    }
    await kube.patch(url, [guard, *ops], deadline=deadline, content_type=JSON_PATCH)
    return True


def gone(what: str, name: str) -> KubeError:
    """The object disappeared between observe and apply: the next pass reports it."""
    return KubeError(404, "NotFound", f"{what} {name!r} not found")


# --- matches ---------------------------------------------------------------------------------------


def prefix_regex(prefix: str) -> str:
    """A prefix match as an RE2 regular expression, for routers that only match exact or regex."""
    return "^" + re.escape(prefix) + ".*"
