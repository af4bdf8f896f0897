"""Services and replicas: pointing the active and preview Services (the one write users feel),
scaling groups with old ones kept warm, and completing a release."""

from __future__ import annotations

from herdsman.engine import groups
from herdsman.engine.bluegreen.context import BlueGreen
from herdsman.engine.groups import Targets
from herdsman.engine.world import GroupKind, ServerGroup


def point(b: BlueGreen, service: str | None, group: str) -> None:
    if service and b.selects(service) != group:
        b.plan.desired.selectors[service] = group


def point_active(b: BlueGreen, group: str, *, force: bool) -> None:
    """The one write users feel. Forward only to a fully available group; `force` is for
    going back to the stable group, kept at full size for exactly this moment."""
    before = b.active_now
    if before == group or not (force or b.ready(group, b.total)):
        return
    point(b, b.strategy.active_service, group)
    if before is not None:
        b.leaving[before] = (
            b.strategy.abort_scale_down_delay_seconds
            if b.st.abort
            else b.strategy.scale_down_delay_seconds
        )


def want_current(b: BlueGreen, targets: Targets, size: int) -> None:
    """The current revision's group at `size`, created if missing (even at 0 pods)."""
    blueprint: tuple[int, str, GroupKind] = (b.revision, b.pod_hash, "release")
    targets.want(b.current_name, size, blueprint=blueprint)


def resize(b: BlueGreen, targets: Targets, *, active: str) -> None:
    """Record scale writes. Only the active group is held to the availability floor: the
    others carry no user traffic, so they shrink at once unless a delay keeps them warm."""
    for name, seconds in b.leaving.items():
        if name not in targets.replicas and name not in b.scale_down_at:
            b.scale_down_at[name] = groups.later(b.now, seconds)
    limit_warm(b, targets)
    for name, until in list(b.scale_down_at.items()):
        if name in targets.replicas or until <= b.now:
            del b.scale_down_at[name]
        else:
            targets.keep_until[name] = until
    for g in b.world.groups:
        if g.name != active:
            targets.urgent.add(g.name)
    b.sizes = groups.scale(b.plan, targets, ceiling=False)
    for g in b.world.groups:
        if g.replicas > 0 and b.sizes.get(g.name) == 0 and g.name not in targets.replicas:
            b.plan.transition("ScaledDown", f"{g.name} scaled down to 0 pods")


def limit_warm(b: BlueGreen, targets: Targets) -> None:
    """scaleDownDelayRevisionLimit: only the newest N previous groups may wait scaled up."""
    limit = b.strategy.scale_down_delay_revision_limit
    if limit is None:
        return
    warm = sorted(
        (
            g
            for g in b.world.groups
            if g.name in b.scale_down_at
            and g.name not in targets.replicas
            and g.name != b.current_name
        ),
        key=lambda g: g.revision,
        reverse=True,
    )
    for g in warm[limit:]:
        del b.scale_down_at[g.name]


def complete(b: BlueGreen, old: ServerGroup, *, reason: str) -> None:
    plan, st, bg = b.plan, b.st, b.bg
    new = b.current_name
    st.stable_server_group = new
    st.stable_revision = b.revision
    # An abort asked for during an undo is moot once the undo is done (the template says
    # where to go; an undo is not aborted half-way, as in the canary strategy).
    st.abort = False
    st.aborted_at = None
    bg.preview_server_group = None
    bg.preview_ready_at = None
    plan.unpause("BlueGreenPause")
    plan.unpause("Inconclusive")
    b.plan.stop_runs()
    delay = b.strategy.scale_down_delay_seconds
    b.scale_down_at[old.name] = groups.later(b.now, delay)
    plan.transition(reason, f"{new} is stable and active; {old.name} scales down in {delay}s")
    point_active(b, new, force=False)
    point(b, b.strategy.preview_service, new)
    targets = Targets()
    want_current(b, targets, b.total)
    resize(b, targets, active=new)
