"""Server-group bookkeeping shared by every strategy: revisions, scaling, history, status rows.

A strategy says which groups should hold how many pods (`targets`); `scale()` turns that into
the writes allowed *now* (surge ceiling, availability floor, scale-down delays), creating missing
groups on the way. Groups a strategy does not name go to zero — at once, after their recorded
`scaleDownAt`, or as the floor permits — and the oldest beyond `revisionHistoryLimit` are deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from herdsman.api.rollout import ServerGroupStatus
from herdsman.api.rollout_status import Role
from herdsman.engine import weights
from herdsman.engine.affinity import with_anti_affinity
from herdsman.engine.plan import Plan
from herdsman.engine.world import GroupKind, NewGroup, ServerGroup
from herdsman.naming import group_name


def protected_stable(plan: Plan, pod_hash: str) -> ServerGroup | None:
    """The group a release protects: the recorded stable, or — with no record (adoption, a
    lost status, the recorded group gone) — the group serving most pods, since that is what
    users are getting."""
    recorded = plan.world.group(plan.status.stable_server_group)
    if recorded is not None and recorded.kind == "release":
        return recorded
    serving = [
        g
        for g in plan.world.groups
        if g.kind == "release" and g.pod_hash != pod_hash and g.replicas > 0
    ]
    return max(serving, key=lambda g: (g.available, g.revision), default=None)


def announce_without_stable(plan: Plan, current: str, made: str) -> None:
    """Say why `current` takes over with no stable group to protect, once: the first revision,
    or — when the status names a stable that is gone (deleted by hand) and no other group runs
    pods — a warning, since its steps are skipped. (Found by the invariant walk, which saw a
    second "first revision" after the recorded stable vanished.)"""
    recorded = plan.status.stable_server_group
    if recorded == current:
        return
    if recorded is None:
        plan.transition("Initialized", f"{current} is the first revision: {made}")
    else:
        plan.transition(
            "StableGone",
            f"{current} {made}: the stable server group {recorded} is gone"
            " and no other server group runs pods",
            warning=True,
        )


def begin_revision(plan: Plan, revision: int, pod_hash: str) -> None:
    """Status for a template seen for the first time: every intent and verdict of the previous
    release is dropped, and its unfinished analysis runs are stopped."""
    st = plan.status
    for run in plan.world.analysis_runs:
        if not run.done and not run.terminated:
            plan.desired.terminate_runs.append(run.name)
    st.current_pod_hash = pod_hash
    st.current_revision = revision
    st.step_started_at = plan.now
    st.abort = False
    st.aborted_at = None
    st.abort_reason = None
    st.promote = None
    # A revision rolled out again (v2 -> v3 -> v2) still has its earlier runs, and a run is
    # named by (revision, kind, attempt): start past them, never read an old verdict.
    st.attempt = max(
        (r.attempt + 1 for r in plan.world.analysis_runs if r.revision == revision), default=0
    )
    st.analysis_runs = []
    st.last_progress_at = plan.now
    plan.drop_condition("ProgressDeadlineExceeded")


def revision_for(plan: Plan, pod_hash: str) -> int:
    """The revision number of the template with `pod_hash`, deterministic across crashes."""
    existing = plan.world.release(pod_hash)
    if existing is not None:
        return existing.revision
    old = plan.old
    if old.current_pod_hash == pod_hash and old.current_revision:
        return old.current_revision
    seen = [g.revision for g in plan.world.groups if g.kind == "release"]
    seen += [old.current_revision or 0, old.stable_revision or 0]
    return max(seen, default=0) + 1


@dataclass
class Targets:
    """Pods per group name, with what a strategy knows about each."""

    replicas: dict[str, int] = field(default_factory=dict)
    # Groups to create if missing: name -> (revision, hash, kind).
    blueprints: dict[str, tuple[int, str, GroupKind]] = field(default_factory=dict)
    # Growth priority: the first named grows first within the ceiling.
    order: list[str] = field(default_factory=list)
    # May drop below the availability floor at once (traffic correctness first).
    urgent: set[str] = field(default_factory=set)
    # Groups not named: kept at their size until this time, then zero.
    keep_until: dict[str, datetime] = field(default_factory=dict)

    def want(
        self, name: str, replicas: int, *, blueprint: tuple[int, str, GroupKind] | None = None
    ) -> None:
        self.replicas[name] = max(0, replicas)
        if name not in self.order:
            self.order.append(name)
        if blueprint is not None:
            self.blueprints[name] = blueprint


def scale(plan: Plan, targets: Targets, *, ceiling: bool = True) -> dict[str, int]:
    """Record the scale writes (and creations) for this pass; returns each group's new size.

    `ceiling=False` lifts the surge bound: with a traffic router, replicas do not carry the weight,
    so the canary can be sized independently of the stable group.
    """
    world = plan.world
    total = plan.spec.replicas
    canary = plan.spec.strategy.canary
    surge: int | str = canary.max_surge if canary else "25%"
    unavailable: int | str = canary.max_unavailable if canary else 0
    lim = weights.limits(total, surge, unavailable)
    if not ceiling:
        lim = weights.Limits(total=total, surge=10**9, unavailable=lim.unavailable)

    observed = {g.name: g for g in world.groups}
    counts: list[weights.GroupCount] = []
    new_sizes: dict[str, int] = {}
    for name in targets.order:
        g = observed.get(name)
        if g is None and name not in targets.blueprints:
            # Gone and not to be created (a baseline at 0, collected already): nothing to do.
            continue
        counts.append(
            weights.GroupCount(
                name=name,
                replicas=g.replicas if g else 0,
                available=g.available if g else 0,
                target=targets.replicas[name],
                urgent=name in targets.urgent,
            )
        )
    for g in world.groups:
        if g.name in targets.replicas:
            continue
        until = targets.keep_until.get(g.name)
        if until is not None and until > plan.now and g.replicas > 0:
            plan.due_at(until)
            new_sizes[g.name] = g.replicas
            continue
        counts.append(
            weights.GroupCount(
                name=g.name,
                replicas=g.replicas,
                available=g.available,
                target=0,
                urgent=g.name in targets.urgent,
            )
        )
    settled = all(g.settled for g in world.groups)
    stepped = weights.step_towards(counts, lim, settled=settled)
    new_sizes.update(stepped)

    for name, size in stepped.items():
        g = observed.get(name)
        if g is None:
            revision, pod_hash, kind = targets.blueprints[name]
            plan.desired.create_groups.append(
                NewGroup(
                    name=name,
                    revision=revision,
                    pod_hash=pod_hash,
                    kind=kind,
                    replicas=size,
                    template=_template(plan, name, kind),
                )
            )
            plan.transition(
                "ServerGroupCreated",
                f"created server group {name} (revision {revision}) with {size} pods",
            )
        elif size != g.replicas:
            plan.desired.scale[name] = size
    if any(c.target != stepped[c.name] or c.available < c.target for c in counts):
        # Not there yet: the ReplicaSet's status change wakes us; this is a safety net.
        plan.due_in(10)
    return new_sizes


def within_rollback_window(plan: Plan, target: ServerGroup, stable: ServerGroup) -> bool:
    """Going back to an older revision skips the steps: by default always (its group is still
    there, known good); with `rollbackWindow`, as Argo does, only within the last N revisions
    — an older one goes through the steps like any new revision."""
    if target.revision >= stable.revision:
        return False
    window = plan.spec.rollback_window
    if window is None:
        return True
    latest = max(g.revision for g in plan.world.groups)
    return latest - target.revision <= window.revisions


def _template(plan: Plan, name: str, kind: GroupKind) -> dict[str, Any]:
    """A new group's pod template: the spec's, plus antiAffinity against the stable group."""
    canary, blue_green = plan.spec.strategy.canary, plan.spec.strategy.blue_green
    rule = canary.anti_affinity if canary is not None else None
    if blue_green is not None:
        rule = blue_green.anti_affinity
    older = plan.status.stable_server_group if kind == "release" else None
    return with_anti_affinity(plan.spec.pod_template, rule, older if older != name else None)


def reached(plan: Plan, targets: Targets, enough: dict[str, int] | None = None) -> bool:
    """Every named group holds its target, fully available (or `enough[name]` available), and
    the controller has caught up."""
    observed = {g.name: g for g in plan.world.groups}
    for name, want in targets.replicas.items():
        g = observed.get(name)
        if g is None:
            if want > 0:
                return False
            continue
        needed = min(want, (enough or {}).get(name, want))
        if g.replicas != want or g.available < needed or not g.settled:
            return False
    return True


def garbage(plan: Plan, in_use: Iterable[str]) -> list[str]:
    """Groups to delete: baselines no longer used, and releases beyond the history limit."""
    keep = set(in_use)
    doomed: list[str] = []
    idle_releases: list[ServerGroup] = []
    for g in plan.world.groups:
        if g.name in keep or g.replicas > 0 or g.available > 0:
            continue
        if g.kind == "baseline":
            doomed.append(g.name)
        else:
            idle_releases.append(g)
    idle_releases.sort(key=lambda g: g.revision, reverse=True)
    doomed += [g.name for g in idle_releases[plan.spec.revision_history_limit :]]
    return doomed


def rows(
    plan: Plan, roles: dict[str, Role], sizes: dict[str, int], scale_down_at: dict[str, datetime]
) -> list[ServerGroupStatus]:
    """status.serverGroups: every group we own, newest first, with its role and counts."""
    out: list[ServerGroupStatus] = []
    seen: set[str] = set()
    for g in sorted(
        plan.world.groups, key=lambda g: (g.revision, g.kind == "baseline"), reverse=True
    ):
        seen.add(g.name)
        if g.name in plan.desired.delete_groups:
            continue
        out.append(
            ServerGroupStatus(
                name=g.name,
                revision=g.revision,
                role=roles.get(g.name, "old"),
                pod_template_hash=g.pod_hash,
                replicas=sizes.get(g.name, g.replicas),
                ready_replicas=g.ready,
                available_replicas=g.available,
                scale_down_at=scale_down_at.get(g.name),
            )
        )
    for new in plan.desired.create_groups:
        if new.name not in seen:
            out.insert(
                0,
                ServerGroupStatus(
                    name=new.name,
                    revision=new.revision,
                    role=roles.get(new.name, "old"),
                    pod_template_hash=new.pod_hash,
                    replicas=new.replicas,
                ),
            )
    return out


def recorded_scale_down(plan: Plan) -> dict[str, datetime]:
    """Scale-down deadlines already promised in status, for groups that still have pods."""
    sizes = {g.name: g.replicas for g in plan.world.groups}
    return {
        row.name: row.scale_down_at
        for row in plan.old.server_groups
        if row.scale_down_at is not None and sizes.get(row.name, 0) > 0
    }


def later(now: datetime, seconds: int) -> datetime:
    return now + timedelta(seconds=seconds)


def release_name(plan: Plan, revision: int) -> str:
    """`<rollout>-v<NNN>`, or the name an adopted group already has (`kubectl herdsman import`
    takes an Argo ReplicaSet over under its own name: renaming would mean new pods)."""
    adopted = next(
        (g for g in plan.world.groups if g.kind == "release" and g.revision == revision), None
    )
    return adopted.name if adopted is not None else group_name(plan.name, revision)
