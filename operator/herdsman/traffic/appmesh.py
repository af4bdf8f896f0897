"""AWS App Mesh: weights on a VirtualRouter's routes (appmesh.k8s.aws/v1beta2).

The user owns the VirtualService, its VirtualRouter (`spec.provider.virtualRouter`) and the two
VirtualNodes. Each managed route — the routes named in `virtualService.routes`, or every route
of the router — of type httpRoute, http2Route, grpcRoute or tcpRoute must list a weightedTarget
for the stable and for the canary VirtualNode; the operator writes only their `weight`s,
100 - w and w, as Argo does.

As Argo points each VirtualNode's `podSelector` at a ReplicaSet by its pod-template hash, the
operator points it at a server group by the `herdsman.dev/server-group` label: the stable node
at the stable group, the canary node at the canary group. With no canary the canary node
selects no pod at all (a placeholder value): App Mesh's admission webhook refuses two nodes with
the same selector. Weights are written first, the nodes after — an abort's 0 never waits on a
node write.

No header or mirror routes (Argo has none for App Mesh either) and no baseline share.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from herdsman.api.rollout import Rollout
from herdsman.api.routing import AppMeshRouting
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, KubeError, Path
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.naming import LABEL_GROUP, label_value
from herdsman.traffic import base
from herdsman.traffic.base import RouterError

GROUP, VERSION = "appmesh.k8s.aws", "v1beta2"
MESH_SERVICES = Path(GROUP, VERSION, "virtualservices")
VIRTUAL_ROUTERS = Path(GROUP, VERSION, "virtualrouters")
VIRTUAL_NODES = Path(GROUP, VERSION, "virtualnodes")
FIELD = f"{base.FIELD}.appMesh"
ROUTE_TYPES = ("httpRoute", "http2Route", "grpcRoute", "tcpRoute")
# The canary node's selector value while there is no canary: matches no pod.
NO_CANARY = "herdsman-no-canary"


def config(rollout: Rollout) -> AppMeshRouting:
    routing = base.strategy(rollout).traffic_routing
    if routing is None or routing.app_mesh is None:
        raise RouterError("not an appMesh rollout")
    return routing.app_mesh


def router_ref(vsvc: dict[str, Any], rollout: Rollout) -> tuple[str, str]:
    """(namespace, name) of the VirtualRouter the VirtualService is provided by."""
    provider = ((vsvc.get("spec") or {}).get("provider") or {}).get("virtualRouter") or {}
    ref = provider.get("virtualRouterRef") or {}
    if not ref.get("name"):
        raise RouterError(
            f"{FIELD}.virtualService.name: VirtualService {config(rollout).virtual_service.name!r}"
            " is not provided by a virtualRouter (spec.provider.virtualRouter.virtualRouterRef)"
        )
    return str(ref.get("namespace") or vsvc["metadata"].get("namespace") or ""), str(ref["name"])


def _rule(route: dict[str, Any]) -> dict[str, Any] | None:
    for kind in ROUTE_TYPES:
        if isinstance(route.get(kind), dict):
            return dict(route[kind])
    return None


def _target(rule: dict[str, Any], node: str, ns: str) -> int | None:
    targets = (rule.get("action") or {}).get("weightedTargets") or []
    for i, t in enumerate(targets):
        ref = t.get("virtualNodeRef") or {}
        if ref.get("name") == node and (ref.get("namespace") or ns) == ns:
            return i
    return None


def managed_routes(vrouter: dict[str, Any], rollout: Rollout) -> list[int]:
    """Indices of the managed routes in spec.routes; RouterError naming what is missing."""
    cfg = config(rollout)
    ns = base.namespace(rollout)
    routes = (vrouter.get("spec") or {}).get("routes") or []
    where = f"{FIELD}.virtualService.routes: VirtualRouter {vrouter['metadata']['name']!r}"
    by_name = {r.get("name"): i for i, r in enumerate(routes)}
    if cfg.virtual_service.routes:
        absent = [n for n in cfg.virtual_service.routes if n not in by_name]
        if absent:
            raise RouterError(f"{where} has no route named {', '.join(map(repr, absent))}")
        chosen = [by_name[n] for n in cfg.virtual_service.routes]
    else:
        chosen = list(range(len(routes)))
        if not chosen:
            raise RouterError(f"{where} has no routes")
    nodes = cfg.virtual_node_group
    for i in chosen:
        rule = _rule(routes[i])
        label = f"route {routes[i].get('name', i)!r}"
        if rule is None:
            raise RouterError(f"{where} {label} has none of {', '.join(ROUTE_TYPES)}")
        for role, node in (
            ("stable", nodes.stable_virtual_node_ref.name),
            ("canary", nodes.canary_virtual_node_ref.name),
        ):
            if _target(rule, node, ns) is None:
                raise RouterError(
                    f"{where} {label} has no weightedTarget for the {role} VirtualNode {node!r}"
                    + (" (add one with weight 0)" if role == "canary" else "")
                )
    return chosen


def state(vrouter: dict[str, Any], rollout: Rollout) -> RouterState:
    """What the VirtualRouter holds (pure: unit tests feed it objects)."""
    try:
        chosen = managed_routes(vrouter, rollout)
    except RouterError as err:
        return RouterState(available=False, message=str(err))
    nodes, ns = config(rollout).virtual_node_group, base.namespace(rollout)
    rows = []
    for i in chosen:
        rule = _rule(vrouter["spec"]["routes"][i]) or {}
        targets = rule["action"]["weightedTargets"]
        stable = targets[_target(rule, nodes.stable_virtual_node_ref.name, ns) or 0]
        canary = targets[_target(rule, nodes.canary_virtual_node_ref.name, ns) or 0]
        rows.append((int(stable.get("weight", 0)), int(canary.get("weight", 0)), 0))
    return base.exact_state(rows)


def desired_router(vrouter: dict[str, Any], rollout: Rollout, weight: int) -> dict[str, Any]:
    """The VirtualRouter's spec holding `weight` (pure)."""
    chosen = managed_routes(vrouter, rollout)
    nodes, ns = config(rollout).virtual_node_group, base.namespace(rollout)
    shares = base.split(rollout, weight)
    spec: dict[str, Any] = copy.deepcopy(vrouter["spec"])
    for i in chosen:
        route = spec["routes"][i]
        kind = next(k for k in ROUTE_TYPES if isinstance(route.get(k), dict))
        targets = route[kind]["action"]["weightedTargets"]
        for node, share in (
            (nodes.stable_virtual_node_ref.name, shares[0]),
            (nodes.canary_virtual_node_ref.name, shares[1]),
        ):
            targets[_target(route[kind], node, ns) or 0]["weight"] = share
    return spec


def desired_node(node: dict[str, Any], group: str) -> dict[str, Any]:
    """The VirtualNode's spec selecting the pods of `group` (pure)."""
    spec: dict[str, Any] = copy.deepcopy(node.get("spec") or {})
    selector = spec.setdefault("podSelector", {})
    selector["matchLabels"] = {
        **(selector.get("matchLabels") or {}),
        LABEL_GROUP: label_value(group),
    }
    return spec


class AppMesh:
    kind: ClassVar[str] = "appMesh"
    header_routes: ClassVar[bool] = False
    mirror_routes: ClassVar[bool] = False
    baseline_share: ClassVar[bool] = False

    async def _router(
        self, kube: Kube, rollout: Rollout, deadline: Deadline
    ) -> tuple[tuple[str, str], dict[str, Any] | None, RouterState | None]:
        """((namespace, name), the VirtualRouter, None), or (_, None, why it is unavailable)."""
        ns, name = base.namespace(rollout), config(rollout).virtual_service.name
        vsvc = await kube.get(MESH_SERVICES.url(ns, name), deadline=deadline)
        if vsvc is None:
            field = f"{FIELD}.virtualService.name"
            why = await base.missing(
                kube, MESH_SERVICES, "VirtualService", ns, name, field, deadline
            )
            return ("", ""), None, why
        try:
            router_ns, router_name = router_ref(vsvc, rollout)
        except RouterError as err:
            return ("", ""), None, RouterState(available=False, message=str(err))
        vrouter = await kube.get(VIRTUAL_ROUTERS.url(router_ns, router_name), deadline=deadline)
        if vrouter is None:
            return (
                (router_ns, router_name),
                None,
                RouterState(
                    available=False,
                    message=f"{FIELD}.virtualService.name: VirtualRouter {router_name!r} (the"
                    f" provider of VirtualService {name!r}) not found in namespace"
                    f" {router_ns!r}",
                ),
            )
        return (router_ns, router_name), vrouter, None

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        _, vrouter, why = await self._router(kube, rollout, deadline)
        if vrouter is None:
            assert why is not None
            return why
        ns, nodes = base.namespace(rollout), config(rollout).virtual_node_group
        for role, ref in (
            ("stable", nodes.stable_virtual_node_ref),
            ("canary", nodes.canary_virtual_node_ref),
        ):
            if await kube.get(VIRTUAL_NODES.url(ns, ref.name), deadline=deadline) is None:
                return RouterState(
                    available=False,
                    message=f"{FIELD}.virtualNodeGroup.{role}VirtualNodeRef.name: VirtualNode"
                    f" {ref.name!r} not found in namespace {ns!r}",
                )
        return state(vrouter, rollout)

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        base.refuse_routes(self.kind, target)
        if target.baseline_weight > 0:
            raise RouterError("the appMesh router cannot give a baseline group its own share")
        (router_ns, router_name), vrouter, why = await self._router(kube, rollout, deadline)
        if vrouter is None:
            # Gone between observe and apply: the next pass reports it (observe says what).
            raise KubeError(404, "NotFound", why.message if why else "VirtualRouter not found")
        spec = desired_router(vrouter, rollout, target.canary_weight)
        url = VIRTUAL_ROUTERS.url(router_ns, router_name)
        await base.patch_spec(kube, url, vrouter, spec, deadline)
        ns, nodes = base.namespace(rollout), config(rollout).virtual_node_group
        canary_group = target.canary_group
        if canary_group is None or canary_group == target.stable_group:
            canary_group = NO_CANARY
        for ref, group in (
            (nodes.stable_virtual_node_ref, target.stable_group),
            (nodes.canary_virtual_node_ref, canary_group),
        ):
            node_url = VIRTUAL_NODES.url(ns, ref.name)
            node = await kube.get(node_url, deadline=deadline)
            if node is None:
                raise base.gone("VirtualNode", ref.name)
            await base.patch_spec(kube, node_url, node, desired_node(node, group), deadline)
