"""Semantic checks the API server cannot make: they need the cluster, or they are judgement.

A problem found here becomes an `InvalidSpec` condition and the decision holds: no server group is
scaled, no selector or weight moves. Each message names the field, like the API server's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from herdsman.api.canary_steps import SetHeaderRoute, SetMirrorRoute
from herdsman.api.rollout import CanaryStrategy, Rollout
from herdsman.api.routing import GATEWAY_API_PLUGIN
from herdsman.engine.chaos_checks import background_chaos_problems, http_fault_problems
from herdsman.engine.world import World

# Routers that can send a header-matched share of traffic to the canary, and a mirrored one.
ROUTERS_WITH_ROUTES = {"gatewayAPI", "istio", "alb", "apisix"}
ROUTERS_WITH_MIRRORS = {"gatewayAPI", "istio"}
# Routers that can split traffic three ways (stable, canary, baseline). An NGINX canary Ingress
# carries exactly one canary backend per host and path.
ROUTERS_WITH_BASELINE = {"gatewayAPI", "istio", "smi", "alb"}


@dataclass(frozen=True)
class Problem:
    """One semantic problem, shaped like the API server's field errors (the plugin's lint
    prints it that way; the operator's InvalidSpec message uses `str()`)."""

    path: str
    kind: str  # "Invalid value", "Forbidden", "Not found"
    detail: str
    value: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}" + (f" ({self.value})" if self.value else "")


def spec_problems(rollout: Rollout) -> list[Problem]:
    """What is wrong with the spec alone: no cluster needed, so `kubectl herdsman lint` says the
    same things the operator will."""
    found: list[Problem] = []
    selector, template = rollout.spec.selector, rollout.spec.template
    if (
        selector is not None
        and template is not None
        and rollout.spec.workload_ref is None
        and not selector.matches(template.metadata.labels)
    ):
        # The CRD refuses this on create; a Rollout stored before that rule (or edited around
        # it) is held here rather than having every ReplicaSet made from it refused.
        found.append(
            Problem(
                "spec.selector",
                "Invalid value",
                "`selector` does not match template `labels`",
                f'"{selector}"',
            )
        )
    canary = rollout.spec.strategy.canary
    if canary is None:
        return found
    prefix = "spec.strategy.canary"
    if canary.stable_service and canary.stable_service == canary.canary_service:
        # Accepted by the API server on purpose: a running rollout is never broken by the
        # edit; the operator holds it as InvalidSpec instead.
        found.append(
            Problem(
                f"{prefix}.canaryService",
                "Invalid value",
                "must differ from stableService",
                f'"{canary.canary_service}"',
            )
        )
    if canary.baseline_service and canary.baseline_service in (
        canary.stable_service,
        canary.canary_service,
    ):
        found.append(
            Problem(
                f"{prefix}.baselineService",
                "Invalid value",
                "must differ from stableService and canaryService",
                f'"{canary.baseline_service}"',
            )
        )
    routing = canary.traffic_routing
    managed = {r.name for r in routing.managed_routes} if routing else set()
    kinds = routing.kinds if routing else []
    no_baseline = [k for k in kinds if k not in ROUTERS_WITH_BASELINE]
    if no_baseline and canary.baseline:
        found.append(
            Problem(
                f"{prefix}.baseline",
                "Forbidden",
                f"the {no_baseline[0]} router cannot give a baseline group its own share of"
                " traffic; judge baseline against canary with gatewayAPI, istio, smi, alb or"
                " the replica ratio",
            )
        )
    elif (
        routing is not None
        and routing.istio is not None
        and routing.istio.destination_rule is not None
        and canary.baseline
    ):
        found.append(
            Problem(
                f"{prefix}.trafficRouting.istio.destinationRule",
                "Forbidden",
                "with baseline, istio routes by host (stable, canary and baseline Services);"
                " drop destinationRule",
            )
        )
    if routing is not None and routing.plugins:
        found.extend(_plugin_problems(canary, f"{prefix}.trafficRouting"))
    starting = canary.analysis.starting_step or 0 if canary.analysis is not None else None
    for i, step in enumerate(canary.steps):
        if step.chaos is not None and starting is not None and starting > i:
            # The API server refuses a chaos step with no background analysis at all; one that
            # starts after the step would leave the fault unjudged.
            found.append(
                Problem(
                    f"{prefix}.steps[{i}].chaos",
                    "Forbidden",
                    "a chaos step needs background analysis running during it"
                    f" (spec.strategy.canary.analysis.startingStep <= {i})",
                )
            )
    found += http_fault_problems(canary, prefix)
    found += background_chaos_problems(canary, prefix)
    for i, step in enumerate(canary.steps):
        for kind, route in (
            ("setHeaderRoute", step.set_header_route),
            ("setMirrorRoute", step.set_mirror_route),
        ):
            if route is not None:
                where = f"{prefix}.steps[{i}].{kind}"
                found.extend(_route_problems(where, route, kinds, managed))
    return found


def _plugin_problems(canary: CanaryStrategy, where: str) -> list[Problem]:
    """Argo's Gateway API plugin block, which the gatewayAPI router carries out: what of its
    configuration does not parse, or is not carried (gRPC, TCP, TLS routes, selectors)."""
    assert canary.traffic_routing is not None
    field = f"{where}.plugins[{GATEWAY_API_PLUGIN}]"
    try:
        plugin = canary.traffic_routing.gateway_api_plugin
    except ValidationError as err:
        found = []
        for e in err.errors():
            path = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                found.append(
                    Problem(
                        f"{field}.{path}",
                        "Forbidden",
                        "the gatewayAPI router carries HTTP, gRPC and TCP routes: use"
                        " httpRoute(s), grpcRoute(s), tcpRoute(s) and namespace",
                    )
                )
            else:
                found.append(Problem(f"{field}.{path}", "Invalid value", e["msg"]))
        return found
    if plugin is None:
        return []  # another plugin: the CRD refuses it, naming the field
    if not (plugin.routes or plugin.grpc_names or plugin.tcp_names):
        return [Problem(field, "Required value", "set httpRoute(s), grpcRoute(s) or tcpRoute(s)")]
    routed = any(s.set_header_route or s.set_mirror_route for s in canary.steps)
    if routed and not any(r.use_header_routes for r in plugin.routes):
        return [
            Problem(
                f"{field}.httpRoutes",
                "Invalid value",
                "the steps set header or mirror routes: give one HTTPRoute useHeaderRoutes: true",
            )
        ]
    return []


def _route_problems(
    where: str,
    route: SetHeaderRoute | SetMirrorRoute,
    kinds: list[str],
    managed: set[str],
) -> list[Problem]:
    """What is wrong with one header or mirror route of a step, at `where`."""
    found: list[Problem] = []
    if route.name not in managed:
        found.append(
            Problem(
                f"{where}.name",
                "Invalid value",
                "not in trafficRouting.managedRoutes",
                f'"{route.name}"',
            )
        )
    mirror = isinstance(route, SetMirrorRoute)
    able = ROUTERS_WITH_MIRRORS if mirror else ROUTERS_WITH_ROUTES
    for router in (k for k in kinds if k not in able):
        what = (
            "mirror traffic"
            if router in ROUTERS_WITH_ROUTES
            else "route by header or mirror traffic"
        )
        found.append(Problem(where, "Forbidden", f"the {router} router cannot {what}"))
    if "alb" in kinds and isinstance(route, SetHeaderRoute):
        for j, h in enumerate(route.match):
            if h.header_value.regex is not None:
                found.append(
                    Problem(
                        f"{where}.match[{j}].headerValue.regex",
                        "Forbidden",
                        "the alb router matches a header exactly or by prefix (ALB has no"
                        " regular expressions)",
                    )
                )
    if "gatewayAPI" in kinds and isinstance(route, SetMirrorRoute):
        for j, m in enumerate(route.match):
            if m.method is not None and m.method.exact is None:
                found.append(
                    Problem(
                        f"{where}.match[{j}].method",
                        "Invalid value",
                        "the gatewayAPI router matches a method exactly; use exact",
                    )
                )
    return found


def problems(rollout: Rollout, world: World) -> list[str]:
    """Everything that holds the rollout: the spec's own problems, then what the cluster lacks."""
    found = [str(p) for p in spec_problems(rollout)]
    found.extend(world.workload_problems)
    strategy = rollout.spec.strategy
    canary = strategy.canary
    if canary is not None:
        prefix = "spec.strategy.canary"
        for field, svc in (
            ("stableService", canary.stable_service),
            ("canaryService", canary.canary_service),
            ("baselineService", canary.baseline_service),
        ):
            if svc and not _service_exists(world, svc):
                found.append(f"{prefix}.{field}: Service {svc!r} not found")
        # The router's object must be there (and hold the routes the spec names) before
        # anything moves: weights written nowhere would leave replicas and traffic disagreeing.
        if world.router is not None and not world.router.available:
            found.append(world.router.message or f"{prefix}.trafficRouting: router unavailable")
    blue_green = strategy.blue_green
    if blue_green is not None:
        prefix = "spec.strategy.blueGreen"
        if blue_green.preview_service and blue_green.preview_service == blue_green.active_service:
            found.append(
                f"{prefix}.previewService must differ from activeService"
                f" ({blue_green.active_service!r})"
            )
        for field, svc in (
            ("activeService", blue_green.active_service),
            ("previewService", blue_green.preview_service),
        ):
            if svc and not _service_exists(world, svc):
                found.append(f"{prefix}.{field}: Service {svc!r} not found")
    changed = _strategy_change(rollout)
    if changed:
        found.append(changed)
    for name in sorted(world.missing_templates):
        found.append(f"analysis template {name!r} not found")
    found.extend(world.analysis_problems)
    found.extend(world.notification_problems)
    return found


def _strategy_change(rollout: Rollout) -> str | None:
    """Changing strategy is allowed at rest (the next revision uses the new one) and refused
    while a release of the other strategy is in flight: no state is ever half-migrated."""
    st, strategy = rollout.status, rollout.spec.strategy
    bg = st.blue_green
    if strategy.blue_green is not None and st.canary_server_group is not None:
        was, now, what = "canary", "blueGreen", f"canary {st.canary_server_group}"
    elif (
        strategy.canary is not None
        and bg is not None
        and (
            bg.preview_server_group is not None
            or (bg.active_server_group or st.stable_server_group) != st.stable_server_group
        )
    ):
        was, now = "blueGreen", "canary"
        what = f"blue/green release {bg.preview_server_group or bg.active_server_group}"
    else:
        return None
    return (
        f"spec.strategy: cannot change from {was} to {now} while {what} is in flight;"
        f" put spec.strategy back and let it finish (or abort and undo it), then change strategy"
    )


def _service_exists(world: World, name: str) -> bool:
    state = world.services.get(name)
    return state is not None and state.exists
