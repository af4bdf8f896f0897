"""Replicas and traffic for a weight: how many pods each group gets, what the router is told.

With no router the replica ratio is the weight; with one, the weight lives in the router and the
replicas only have to carry it — never told more than the canary's ready pods carry, make before
break in both directions. Everything here computes targets into the plan; nothing is written.
"""

from __future__ import annotations

from herdsman.api.canary_steps import SetCanaryScale, SetHeaderRoute, SetMirrorRoute
from herdsman.api.rollout import CanaryStep
from herdsman.api.routing import ping_pong_roles
from herdsman.engine import groups, weights
from herdsman.engine.canary.context import Canary
from herdsman.engine.groups import Targets
from herdsman.engine.world import GroupKind, ServerGroup, TrafficTarget
from herdsman.naming import LABEL_GROUP, baseline_name


def replica_targets(
    c: Canary, stable: ServerGroup, weight: int, step: CanaryStep | None
) -> Targets:
    t = Targets()
    blueprint: tuple[int, str, GroupKind] = (c.revision, c.pod_hash, "release")
    canary_name = c.current_name
    base = baseline_name(c.plan.name, stable.revision) if c.strategy.baseline else None
    if not c.routed:
        lim = weights.limits(c.total, c.strategy.max_surge, c.strategy.max_unavailable)
        split = weights.replica_split(
            c.total, weight, baseline=base is not None, ceiling=lim.ceiling
        )
        t.want(canary_name, split.canary, blueprint=blueprint)
        if base is not None:
            t.want(base, split.baseline, blueprint=(stable.revision, stable.pod_hash, "baseline"))
        t.want(stable.name, split.stable)
        return t
    # With a router the weight lives in the router; replicas only need to carry it. While
    # the router still holds another weight than the step's, each side keeps the pods for
    # the larger of its two shares (make before break): the canary shrinks only once its
    # share has moved down, and (dynamicStableScale) the stable group only once it moved up.
    scale = canary_scale(c, weight)
    sent = sendable(c, stable, weight)
    if sent > effective(c, weight) and c.current is not None:
        scale = max(scale, c.current.replicas)
    t.want(canary_name, scale, blueprint=blueprint)
    if base is not None:
        t.want(
            base,
            scale if 0 < weight < c.max_weight else 0,
            blueprint=(stable.revision, stable.pod_hash, "baseline"),
        )
    stable_size = c.total
    if c.strategy.dynamic_stable_scale:
        stable_size = stable_pods(c, min(effective(c, weight), sent))
        # A canary scaled below its weight's share (setCanaryScale) must not take the total
        # under the availability floor: the rolling update could never get there.
        floor = weights.limits(c.total, c.strategy.max_surge, c.strategy.max_unavailable).floor
        stable_size = min(c.total, max(stable_size, floor - scale))
    t.want(stable.name, stable_size)
    return t


def effective(c: Canary, weight: int) -> int:
    """The step's weight as the router can carry it: 0 when the canary is scaled to 0."""
    return weight if canary_scale(c, weight) > 0 else 0


def at_least_min(c: Canary, pods: int) -> int:
    """minPodsPerReplicaSet (Argo's, with a router): a group that runs at all runs at least
    this many pods, for availability; never more than spec.replicas."""
    least = c.strategy.min_pods_per_replica_set
    if least is None or pods <= 0:
        return pods
    return min(max(pods, least), max(c.total, pods))


def stable_pods(c: Canary, weight: int) -> int:
    """dynamicStableScale: the stable pods that carry the rest of `weight`."""
    left = c.total - share(c, weight)
    return at_least_min(c, min(c.total, max(left, 0 if weight >= c.max_weight else 1)))


def held_weight(c: Canary) -> int:
    """The canary weight the router holds now, as far as it reaches this canary: 0 while the
    canary Service still selects another group (a new revision's first passes)."""
    name = canary_service(c)
    svc = c.world.services.get(name or "")
    # Without a canary Service (Istio subsets carry the groups), the router's weight is the
    # canary's as soon as the subset names it: the router writes subsets with the weights.
    if name and (svc is None or svc.selector.get(LABEL_GROUP) != c.current_name):
        return 0
    router = c.world.router
    if router is not None and router.canary_weight is not None:
        return router.canary_weight
    return c.plan.old.weights.canary


def sendable(c: Canary, stable: ServerGroup, weight: int) -> int:
    """The weight the router may be told in this pass for a step asking `weight`.

    Never more than the canary's ready pods carry: moving up waits until the canary group
    has every pod the step sizes it at, and nothing goes to a canary with no available pod.
    With dynamicStableScale, moving down waits until the stable group can take the share
    back. Until then the router keeps what it holds.
    """
    up = c.current.available if c.current is not None else 0
    if up == 0:
        return 0
    want = effective(c, weight)
    held = held_weight(c)
    # With a baseline the two move up together: both judged on the same share.
    ready = up >= threshold(c, canary_scale(c, weight))
    if c.strategy.baseline_service:  # the CRD allows it only with baseline: true
        base = c.world.group(c.st.baseline_server_group)
        ready = (
            ready and base is not None and base.available >= threshold(c, canary_scale(c, weight))
        )
    # Up: wait for the canary's pods. Down (dynamicStableScale): wait for stable's.
    wait_up = want > held and not ready
    wait_down = (
        want < held and c.strategy.dynamic_stable_scale and stable.available < stable_pods(c, want)
    )
    sent = held if wait_up or wait_down else want
    # Capped by what the canary's pods carry even while waiting to move down: spec.replicas
    # may have grown under a held weight (found by the walk: 2 -> 5 replicas at 30%).
    return carried(c, sent, up)


def carried(c: Canary, weight: int, up: int) -> int:
    """`weight`, lowered to what `up` available canary pods carry (pods were lost, or
    never came up). setCanaryScale sizes the canary apart from its weight: kept as is."""
    if scale_override(c) is not None:
        return weight
    return min(weight, most_carried(c, up))


def threshold(c: Canary, desired: int) -> int:
    """Available pods that carry a step asking for `desired` canary pods: all of them, or
    replicaProgressThreshold's share (Argo's)."""
    t = c.strategy.replica_progress_threshold
    return weights.progress_threshold(desired, t.type if t else None, t.value if t else None)


def most_carried(c: Canary, up: int) -> int:
    """The largest weight (out of maxTrafficWeight) that `up` available pods carry: its share
    of pods, or replicaProgressThreshold's part of it, is up. Found by bisection, as both only
    grow with the weight (maxTrafficWeight may be large)."""
    low, high = 0, c.max_weight
    while low < high:
        mid = (low + high + 1) // 2
        if threshold(c, share(c, mid)) <= up:
            low = mid
        else:
            high = mid - 1
    return low


def share(c: Canary, weight: int) -> int:
    """The canary pods a weight (out of maxTrafficWeight) is worth."""
    return weights.canary_replicas(c.total, weight, c.max_weight)


def scale_override(c: Canary) -> SetCanaryScale | None:
    """The setCanaryScale in force at the current step (a setWeight ends it)."""
    idx = min(c.st.current_step_index or 0, len(c.steps))
    override = None
    for step in c.steps[: idx + 1]:
        if step.set_weight is not None:
            override = None
        if step.set_canary_scale is not None:
            override = step.set_canary_scale
    return override


def canary_scale(c: Canary, weight: int) -> int:
    """Canary pods with a router: the latest setCanaryScale in force, else the weight's share."""
    override = scale_override(c)
    if override is not None and weight < c.max_weight:
        if override.replicas is not None:
            return override.replicas
        if override.weight is not None:
            return at_least_min(c, weights.canary_replicas(c.total, override.weight))
    return at_least_min(c, share(c, weight))


def shift(c: Canary, stable: ServerGroup, weight: int, step: CanaryStep) -> None:
    targets = replica_targets(c, stable, weight, step)
    assign_roles(c, stable)
    resize(c, targets)
    canary_up = c.current is not None and c.current.available > 0
    base = c.world.group(c.st.baseline_server_group)
    serving = stable_serving(c, stable)
    services(
        c,
        stable_group=serving,
        canary_group=c.current_name if canary_up else stable.name,
        baseline_group=base.name if base is not None and base.available > 0 else serving,
    )
    if c.routed:
        set_router(c, stable, sendable(c, stable, weight), baseline=True)


def stable_serving(c: Canary, stable: ServerGroup) -> str:
    """The group the stable Service selects in this pass: the stable group — unless, by replica
    ratio, this pass takes its last pods away (a weight of 100, or a promotion's final roll)
    while the new group has pods up. Selectors are written before shrinks, so the stable
    Service's users move to pods that serve before the old ones go (found by the chaos suite:
    for a moment it selected a group with none); status names the new group stable once it is
    all up, as before."""
    return serving(c, stable, stable.name)


def serving(c: Canary, group: ServerGroup | None, name: str) -> str:
    """`name`, unless by replica ratio it has no pod up (or loses its last in this pass) while
    another group serves: then the group that serves, the new one first. The crash property
    test found three ways there — a newer revision interrupting a final roll, a stable group
    growing back from none (setWeight 75 then 0), and the template undone to an emptied
    stable group. Behind a router the Service stays put: the router's weights decide."""
    if c.routed:
        return name

    def up(g: ServerGroup | None) -> bool:
        return g is not None and g.available > 0 and c.sizes.get(g.name, g.replicas) > 0

    if up(group):
        return name
    if up(c.current):
        return c.current_name
    others = [g for g in c.world.groups if up(g)]
    if others:
        return max(others, key=lambda g: (g.available, g.revision)).name
    return name


def assign_roles(c: Canary, stable: ServerGroup) -> None:
    st = c.st
    c.roles[stable.name] = "stable"
    c.roles[c.current_name] = "canary"
    st.canary_server_group = c.current_name
    if c.strategy.baseline:
        base = baseline_name(c.plan.name, stable.revision)
        c.roles[base] = "baseline"
        st.baseline_server_group = base


def resize(c: Canary, targets: Targets) -> None:
    limit_warm(c, targets)
    for name, until in c.scale_down_at.items():
        if name not in targets.replicas:
            targets.keep_until.setdefault(name, until)
    c.sizes = groups.scale(c.plan, targets, ceiling=not c.routed)


def limit_warm(c: Canary, targets: Targets) -> None:
    """scaleDownDelayRevisionLimit (Argo's): of the previous groups waiting out their scale-down
    delay, only the newest N stay up; older ones scale down now."""
    limit = c.strategy.scale_down_delay_revision_limit
    if limit is None:
        return
    waiting = [
        g
        for g in c.plan.world.groups
        if g.name in c.scale_down_at and g.name not in targets.replicas
    ]
    waiting.sort(key=lambda g: g.revision, reverse=True)
    for g in waiting[limit:]:
        del c.scale_down_at[g.name]


def canary_service(c: Canary) -> str | None:
    """The Service that reaches the canary: canaryService, or pingPong's canary of the pair."""
    pp = c.strategy.ping_pong
    if c.strategy.canary_service or pp is None:
        return c.strategy.canary_service
    return ping_pong_roles(pp, c.st.stable_ping_pong)[1]


def swap_ping_pong(c: Canary) -> None:
    """A release completed: with pingPong the Service that carried the canary is stable now."""
    if c.strategy.ping_pong is not None:
        c.st.stable_ping_pong = "ping" if c.st.stable_ping_pong == "pong" else "pong"


def services(
    c: Canary, *, stable_group: str, canary_group: str, baseline_group: str | None = None
) -> None:
    """Point each Service at its group; the baseline Service selects the stable group
    whenever there is no baseline group with pods (like the canary Service without one)."""
    desired = c.plan.desired
    pairs = [
        (c.strategy.stable_service, stable_group),
        (c.strategy.canary_service, canary_group),
        (c.strategy.baseline_service, baseline_group or stable_group),
    ]
    pp = c.strategy.ping_pong
    if pp is not None:
        # pingPong: the pair takes the roles status.stablePingPong names (swapped when a
        # release completes), beside stableService/canaryService if those are set too.
        stable_pp, canary_pp = ping_pong_roles(pp, c.st.stable_ping_pong)
        pairs += [(stable_pp, stable_group), (canary_pp, canary_group)]
    for svc, group in pairs:
        if not svc:
            continue
        state = c.world.services.get(svc)
        if state is None or state.selector.get("herdsman.dev/server-group") != group:
            desired.selectors[svc] = group


def routes(c: Canary) -> tuple[tuple[SetHeaderRoute, ...], tuple[SetMirrorRoute, ...]]:
    """Header and mirror routes in force at the current step, in managedRoutes order: the
    last step naming a route wins, and one with an empty match removes it."""
    idx = min(c.st.current_step_index or 0, len(c.steps))
    last: dict[str, SetHeaderRoute | SetMirrorRoute] = {}
    for step in c.steps[: idx + 1]:
        # A step may set a header route and a mirror route together (Argo allows it).
        for route in (step.set_header_route, step.set_mirror_route):
            if route is not None:
                last[route.name] = route
    routing = c.strategy.traffic_routing
    order = [r.name for r in routing.managed_routes] if routing else []
    live = sorted(
        (r for r in last.values() if r.match),
        key=lambda r: (order.index(r.name) if r.name in order else len(order), r.name),
    )
    return (
        tuple(r for r in live if isinstance(r, SetHeaderRoute)),
        tuple(r for r in live if isinstance(r, SetMirrorRoute)),
    )


def baseline_share(c: Canary, sent: int) -> int:
    """The baseline Service's weight next to a canary weight `sent` in a step: the same,
    while the baseline group has pods to take it."""
    base = c.world.group(c.st.baseline_server_group)
    if not c.strategy.baseline_service or base is None or base.available == 0:
        return 0
    return sent if 0 < 2 * sent <= c.max_weight else 0


def held_baseline(c: Canary) -> int:
    """The baseline weight the router holds now (the last status when it is unreadable)."""
    router = c.world.router
    if router is not None and router.baseline_weight is not None:
        return router.baseline_weight
    return c.plan.old.weights.baseline


def set_router(
    c: Canary, stable: ServerGroup | None, weight: int, *, baseline: bool = False
) -> None:
    """The router's target; `baseline` only while stepping (promotion and abort give the
    baseline's share back to stable)."""
    if not c.routed:
        return
    headers, mirrors = routes(c)
    if stable is None or c.st.abort:
        # Completed (no canary) or aborted: every route to the canary goes with the weight.
        headers, mirrors = (), ()
    c.plan.desired.traffic = TrafficTarget(
        canary_weight=weight,
        canary_group=c.st.canary_server_group,
        stable_group=c.st.stable_server_group or (stable.name if stable else c.current_name),
        header_routes=headers,
        mirror_routes=mirrors,
        baseline_weight=baseline_share(c, weight) if baseline and stable else 0,
    )
