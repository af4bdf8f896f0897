"""AWS Load Balancer Controller (ALB): the weights in an Ingress's `actions.<service>` annotation.

The user owns the Ingress(es) and the rule in them whose backend names the action service
(`rootService`, else the stable Service) with port `use-annotation`: that tells the AWS Load
Balancer Controller to read the forward action from the annotation
`<annotationPrefix>/actions.<action service>`. The operator writes that annotation — a forward
action over two target groups, the canary Service at w and the stable Service at 100 - w, both
on `servicePort` (with `stickinessConfig`, a target-group stickiness block) — and nothing
else in the weight's case: the Ingress spec stays the user's. With `ingresses`, every Ingress
gets the same action and the state is a weight only when all of them hold it.

With `pingPong`, the ping and pong Services take the target groups' places, and which is stable
swaps at each completed release (status.stablePingPong): the Service that carried the canary to
100% becomes stable without its selector, and so its target group's registrations, changing.
The action is named after `rootService` then (the stable Service changes each release; without
a rootService, the ping Service names it).

Header routes (`setHeaderRoute`) become, per route, an `actions.<route>` annotation forwarding
everything to the canary, a `conditions.<route>` annotation with the header matches, and a path
in the Ingress ahead of the action rule's, backend `<route>` port `use-annotation` — the
controller's way of saying "this rule, under these conditions". All three go when the route
goes. Matches: exact, and prefix as ALB's `*` wildcard; regex is refused (ALB has none).

Every key the operator writes is listed in `rollouts.argoproj.io/managed-alb-actions` under the
rollout's name, as Argo keeps it, so tooling that reads it (and a later Argo) agrees.

Not verified against AWS: Argo can check (`--aws-verify-target-group`) that the load balancer's
target groups took the weights. No AWS API is reachable here, so Herdsman reads back what the
Ingress annotation holds — what the controller is told, not what the ALB does. That is the safe
side: a step never completes on weights nobody wrote, and a controller that is down or lagging
shows up as the controller's own Ingress events, not as a weight Herdsman claims the ALB has.
"""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar

from herdsman.api.canary_steps import HeaderMatch, SetHeaderRoute
from herdsman.api.rollout import Rollout
from herdsman.api.routing import ALBRouting
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import JSON_PATCH, Kube, Path
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.traffic import base
from herdsman.traffic.base import RouterError

INGRESSES = Path("networking.k8s.io", "v1", "ingresses")
FIELD = f"{base.FIELD}.alb"
USE_ANNOTATION = "use-annotation"
MANAGED = "rollouts.argoproj.io/managed-alb-actions"


def config(rollout: Rollout) -> ALBRouting:
    routing = base.strategy(rollout).traffic_routing
    if routing is None or routing.alb is None:
        raise RouterError("not an alb rollout")
    return routing.alb


def services(rollout: Rollout) -> tuple[str, str]:
    """(stable, canary) target groups: the pingPong pair when there is one (Argo's choice)."""
    return base.services(rollout, prefer_ping_pong=True)


def action_service(rollout: Rollout) -> str:
    cfg, canary = config(rollout), base.strategy(rollout)
    if cfg.root_service:
        return cfg.root_service
    if canary.ping_pong is not None:
        return canary.ping_pong.ping_service
    return base.services(rollout)[0]


def action_key(rollout: Rollout, name: str) -> str:
    return f"{config(rollout).annotation_prefix}/actions.{name}"


def condition_key(rollout: Rollout, name: str) -> str:
    return f"{config(rollout).annotation_prefix}/conditions.{name}"


# --- the annotations' JSON ---------------------------------------------------------------------


def forward_action(rollout: Rollout, groups: list[tuple[str, int]]) -> str:
    """The forward action over (service, weight) target groups, as the controller reads it."""
    cfg = config(rollout)
    forward: dict[str, Any] = {
        "TargetGroups": [
            {"ServiceName": svc, "ServicePort": str(cfg.service_port), "Weight": w}
            for svc, w in groups
        ]
    }
    sticky = cfg.stickiness_config
    if sticky is not None and sticky.enabled:
        forward["TargetGroupStickinessConfig"] = {
            "Enabled": True,
            "DurationSeconds": sticky.duration_seconds,
        }
    return json.dumps({"Type": "forward", "ForwardConfig": forward}, separators=(",", ":"))


def weights_action(rollout: Rollout, weight: int, baseline_weight: int = 0) -> str:
    stable, canary = services(rollout)
    shares = base.split(rollout, weight, baseline_weight)
    groups = [(canary, shares[1])]
    baseline = base.baseline_service(rollout)
    if baseline is not None:
        groups.append((baseline, shares[2]))
    groups.append((stable, shares[0]))
    return forward_action(rollout, groups)


def header_value(match: HeaderMatch) -> str:
    value = match.header_value
    if value.exact is not None:
        return value.exact
    if value.prefix is not None:
        return value.prefix + "*"
    raise RouterError(
        f"the alb router matches a header exactly or by prefix, not by regex ({match.header_name})"
    )


def conditions(route: SetHeaderRoute) -> str:
    return json.dumps(
        [
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": m.header_name, "Values": [header_value(m)]},
            }
            for m in route.match
        ],
        separators=(",", ":"),
    )


def _folded(obj: Any) -> dict[str, Any]:
    """A JSON object with lower-cased keys: the controller decodes the action with Go's
    case-insensitive field matching, so `Weight` and `weight` are the same to it."""
    if not isinstance(obj, dict):
        raise TypeError("not an object")
    return {str(k).lower(): v for k, v in obj.items()}


def read_weights(rollout: Rollout, raw: str | None) -> tuple[int, int, int] | None:
    """(stable, canary, baseline) from an action annotation; None when it is not ours to read
    (absent, not JSON, or not naming the stable and canary Services)."""
    if raw is None:
        return None
    try:
        action = _folded(json.loads(raw))
        forward = _folded(action.get("forwardconfig") or {})
        groups: dict[str, int] = {}
        for group in forward.get("targetgroups") or []:
            tg = _folded(group)
            groups[str(tg.get("servicename"))] = int(tg.get("weight") or 0)
    except (ValueError, TypeError, AttributeError):
        return None
    stable, canary = services(rollout)
    if stable not in groups or canary not in groups:
        return None
    baseline = base.baseline_service(rollout)
    return groups[stable], groups[canary], groups.get(baseline, 0) if baseline else 0


# --- the Ingress -------------------------------------------------------------------------------


def _paths(spec: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    return [
        (rule, rule.get("http", {}).get("paths") or [])
        for rule in spec.get("rules") or []
        if isinstance(rule.get("http"), dict)
    ]


def _backend_name(path: dict[str, Any]) -> str | None:
    backend = path.get("backend") or {}
    return (backend.get("service") or {}).get("name") or backend.get("serviceName")


def check_ingress(ingress: dict[str, Any], rollout: Rollout) -> None:
    svc = action_service(rollout)
    if not any(
        _backend_name(p) == svc for _, paths in _paths(ingress.get("spec") or {}) for p in paths
    ):
        raise RouterError(
            f"{FIELD}: Ingress {ingress['metadata']['name']!r} has no rule with backend Service"
            f" {svc!r} (port {USE_ANNOTATION}) for the action to apply to"
        )


def managed_list(notes: dict[str, str], rollout: Rollout, keys: list[str]) -> str:
    """The bookkeeping annotation with this rollout's entry set to `keys`."""
    try:
        table = json.loads(notes.get(MANAGED) or "{}")
        if not isinstance(table, dict):
            table = {}
    except ValueError:
        table = {}
    table[rollout.metadata.name] = keys
    return json.dumps(table, separators=(",", ":"), sort_keys=True)


def desired(ingress: dict[str, Any], rollout: Rollout, target: TrafficTarget) -> dict[str, Any]:
    """The Ingress's annotations and spec holding `target` (pure: unit tests feed it objects).

    Returns {"annotations": ..., "spec": ...}: what others wrote stays; ours are set."""
    check_ingress(ingress, rollout)
    if target.mirror_routes:
        raise RouterError("the alb router cannot mirror traffic")
    notes = dict(ingress["metadata"].get("annotations") or {})
    spec = copy.deepcopy(ingress.get("spec") or {})
    mine = action_key(rollout, action_service(rollout))
    notes[mine] = weights_action(rollout, target.canary_weight, target.baseline_weight)
    keys = [mine]
    _, canary = services(rollout)
    routes = [r for _, r in base.ordered_routes(rollout, target) if isinstance(r, SetHeaderRoute)]
    wanted = {r.name for r in routes}
    for name in base.route_order(rollout):
        if name not in wanted:
            notes.pop(action_key(rollout, name), None)
            notes.pop(condition_key(rollout, name), None)
    for route in routes:
        notes[action_key(rollout, route.name)] = forward_action(rollout, [(canary, 100)])
        notes[condition_key(rollout, route.name)] = conditions(route)
        keys += [action_key(rollout, route.name), condition_key(rollout, route.name)]
    notes[MANAGED] = managed_list(notes, rollout, keys)
    managed = set(base.route_order(rollout))
    action = action_service(rollout)
    for _, paths in _paths(spec):
        root = next((p for p in paths if _backend_name(p) == action), None)
        kept = [p for p in paths if _backend_name(p) not in managed]
        if root is not None:
            # Routes ahead of the action's path, in managedRoutes order: the first match wins.
            added = []
            for route in routes:
                path = copy.deepcopy(root)
                path["backend"] = {
                    "service": {"name": route.name, "port": {"name": USE_ANNOTATION}}
                }
                added.append(path)
            at = kept.index(root)
            kept[at:at] = added
        paths[:] = kept
    return {"annotations": notes, "spec": spec}


def state(ingresses: list[dict[str, Any]], rollout: Rollout) -> RouterState:
    rows: list[tuple[int, int, int]] = []
    routes: set[str] | None = None
    for ingress in ingresses:
        try:
            check_ingress(ingress, rollout)
        except RouterError as err:
            return RouterState(available=False, message=str(err))
        notes = ingress["metadata"].get("annotations") or {}
        row = read_weights(rollout, notes.get(action_key(rollout, action_service(rollout))))
        if row is None:
            return RouterState(canary_weight=None, baseline_weight=None)
        rows.append(row)
        names = {_backend_name(p) for _, paths in _paths(ingress.get("spec") or {}) for p in paths}
        here = {
            n
            for n in base.route_order(rollout)
            if condition_key(rollout, n) in notes and n in names
        }
        routes = here if routes is None else routes & here
    return base.exact_state(rows, frozenset(routes or ()))


class ALB:
    kind: ClassVar[str] = "alb"
    header_routes: ClassVar[bool] = True
    mirror_routes: ClassVar[bool] = False
    baseline_share: ClassVar[bool] = True

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        ns = base.namespace(rollout)
        found = []
        for name in config(rollout).names:
            ingress = await kube.get(INGRESSES.url(ns, name), deadline=deadline)
            if ingress is None:
                return RouterState(
                    available=False,
                    message=f"{FIELD}: Ingress {name!r} not found in namespace {ns!r}",
                )
            found.append(ingress)
        return state(found, rollout)

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        ns = base.namespace(rollout)
        for name in config(rollout).names:
            url = INGRESSES.url(ns, name)
            ingress = await kube.get(url, deadline=deadline)
            if ingress is None:
                raise base.gone("Ingress", name)
            want = desired(ingress, rollout, target)
            old = {
                "metadata": {"annotations": ingress["metadata"].get("annotations") or {}},
                "spec": ingress.get("spec") or {},
            }
            new = {"metadata": {"annotations": want["annotations"]}, "spec": want["spec"]}
            ops = base.json_patch(old, new)
            if not ops:
                continue
            if "annotations" not in ingress["metadata"]:
                # No annotations map yet: one `add` of the whole map (a key can't be added
                # to a map that isn't there).
                ops = [
                    {"op": "add", "path": "/metadata/annotations", "value": want["annotations"]},
                    *base.json_patch(old["spec"], new["spec"], "/spec"),
                ]
            guard = {
                "op": "replace",
                "path": "/metadata/resourceVersion",
                "value": ingress["metadata"]["resourceVersion"],
            }
            await kube.patch(url, [guard, *ops], deadline=deadline, content_type=JSON_PATCH)
