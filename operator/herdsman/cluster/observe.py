"""Observe: read everything one Rollout's decision depends on, concurrently, under one deadline.

The Rollout comes from the watch-fed `Cache`, as do its server groups and AnalysisRuns when the
operator runs one (filled by a full list before the first pass, see cluster/cache.py), else
from a LIST each. Its Services, templates and router objects are read by name: through the
operator's `Kube`, which answers those GETs from watches once it holds the kind
(cluster/reads.py), else from the API server. Every call is bounded by the reconcile's
deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from herdsman.api.analysis_ref import RolloutAnalysis
from herdsman.api.rollout import Rollout
from herdsman.cluster.budget import Deadline
from herdsman.cluster.cache import Cache
from herdsman.cluster.experiment_paths import EXPERIMENTS
from herdsman.cluster.kube import (
    ANALYSIS_RUNS,
    ANALYSIS_TEMPLATES,
    CLUSTER_ANALYSIS_TEMPLATES,
    PODS,
    REPLICA_SETS,
    SERVICES,
    Kube,
)
from herdsman.cluster.kube import Path as KPath
from herdsman.engine.world import (
    AnalysisRunView,
    ExperimentView,
    GroupKind,
    PodView,
    ServerGroup,
    ServiceState,
    World,
)
from herdsman.naming import (
    LABEL_GROUP,
    LABEL_HASH,
    LABEL_KIND,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    label_value,
)
from herdsman.traffic import READ_PATHS, observe_router

# What a pass reads by name on every pass: its Services, templates and router objects. The
# operator serves these GETs from watches once it has read one (cluster/reads.py), so it needs
# list and watch on them as well as get (tests/unit/test_chart_rbac.py reads this).
READS: tuple[KPath, ...] = (SERVICES, ANALYSIS_TEMPLATES, CLUSTER_ANALYSIS_TEMPLATES, *READ_PATHS)


@dataclass
class Observed:
    """The world as the engine sees it, plus the raw objects the doing layer needs again."""

    world: World
    replica_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[tuple[str, bool], dict[str, Any]] = field(default_factory=dict)
    # The Rollout as read this pass (fieldRef arguments resolve against it).
    body: dict[str, Any] = field(default_factory=dict)
    # AnalysisRun statuses measured this pass, written by the Applier after traffic-first writes.
    run_updates: dict[str, Any] = field(default_factory=dict)


def referenced_analyses(rollout: Rollout) -> list[RolloutAnalysis]:
    strategy = rollout.spec.strategy
    found: list[RolloutAnalysis] = []
    if strategy.canary is not None:
        found += [s.analysis for s in strategy.canary.steps if s.analysis is not None]
        if strategy.canary.analysis is not None:
            found.append(strategy.canary.analysis)
    if strategy.blue_green is not None:
        for a in (
            strategy.blue_green.pre_promotion_analysis,
            strategy.blue_green.post_promotion_analysis,
        ):
            if a is not None:
                found.append(a)
    return found


def services_of(rollout: Rollout) -> list[str]:
    strategy = rollout.spec.strategy
    names: list[str | None] = []
    if strategy.canary is not None:
        names += [
            strategy.canary.stable_service,
            strategy.canary.canary_service,
            strategy.canary.baseline_service,
        ]
        if strategy.canary.ping_pong is not None:
            names += [
                strategy.canary.ping_pong.ping_service,
                strategy.canary.ping_pong.pong_service,
            ]
    if strategy.blue_green is not None:
        names += [strategy.blue_green.active_service, strategy.blue_green.preview_service]
    return sorted({n for n in names if n})


def restart_pending(rollout: Rollout) -> bool:
    wanted, done = rollout.spec.restart_at, rollout.status.restarted_at
    return wanted is not None and (done is None or done < wanted)


async def observe(
    kube: Kube, rollout: Rollout, deadline: Deadline, cache: Cache | None = None
) -> Observed:
    ns = rollout.metadata.namespace or "default"
    name = rollout.metadata.name
    selector = f"{LABEL_ROLLOUT}={label_value(name)}"
    refs = {
        (t.template_name, t.cluster_scope)
        for a in referenced_analyses(rollout)
        for t in a.templates
    }

    async def template(key: tuple[str, bool]) -> tuple[tuple[str, bool], dict[str, Any] | None]:
        tname, cluster = key
        path = (
            CLUSTER_ANALYSIS_TEMPLATES.url(None, tname)
            if cluster
            else ANALYSIS_TEMPLATES.url(ns, tname)
        )
        return key, await kube.get(path, deadline=deadline)

    async def service(svc: str) -> ServiceState:
        body = await kube.get(SERVICES.url(ns, svc), deadline=deadline)
        if body is None:
            return ServiceState(svc, exists=False)
        return ServiceState(
            svc, exists=True, selector=dict(body.get("spec", {}).get("selector") or {})
        )

    async def pods() -> list[dict[str, Any]]:
        if not restart_pending(rollout):
            return []
        return await kube.list(PODS.url(ns), deadline=deadline, labels=selector)

    if cache is not None and cache.ready("ReplicaSet", ns, name):
        rs_task = _ready(cache.owned("ReplicaSet", ns, label_value(name)))
    else:
        rs_task = kube.list(REPLICA_SETS.url(ns), deadline=deadline, labels=selector)
    if not refs:
        runs_task = _empty()
    elif cache is not None and cache.ready("AnalysisRun", ns, name):
        runs_task = _ready(cache.owned("AnalysisRun", ns, label_value(name)))
    else:
        runs_task = kube.list(ANALYSIS_RUNS.url(ns), deadline=deadline, labels=selector)
    # (ReplicaSets, Experiments) as one item: asyncio.gather is typed for up to six.
    owned_task = asyncio.gather(rs_task, _experiments(kube, rollout, ns, selector, deadline))
    (rs_items, exp_items), run_items, services, templates, pod_items, router = await asyncio.gather(
        owned_task,
        runs_task,
        asyncio.gather(*(service(s) for s in services_of(rollout))),
        asyncio.gather(*(template(k) for k in sorted(refs))),
        pods(),
        observe_router(kube, rollout, deadline),
    )
    uid = rollout.metadata.uid
    owned = [rs for rs in rs_items if _owned_by(rs, uid)]
    groups = tuple(group_from(rs) for rs in owned)
    # The engine speaks of groups by name; Services and pods carry the label_value() of it.
    by_label = {label_value(g.name): g.name for g in groups}
    named = [_named_selector(s, by_label) for s in services]
    runs = tuple(run_from(r) for r in run_items if _owned_by(r, uid))
    pod_views = tuple(
        PodView(
            name=p["metadata"]["name"],
            group=_group_of(p["metadata"].get("labels", {}).get(LABEL_GROUP, ""), by_label),
            created_at=_time(p["metadata"].get("creationTimestamp")) or datetime.now(UTC),
            ready=_pod_ready(p),
        )
        for p in pod_items
        if not p["metadata"].get("deletionTimestamp")
    )
    world = World(
        groups=groups,
        services={s.name: s for s in named},
        analysis_runs=runs,
        missing_templates=frozenset(
            f"{'ClusterAnalysisTemplate' if k[1] else 'AnalysisTemplate'}/{k[0]}"
            for k, body in templates
            if body is None
        ),
        router=router,
        pods=pod_views,
        experiments=tuple(
            ExperimentView(
                name=e["metadata"]["name"],
                phase=(e.get("status") or {}).get("phase") or "Pending",
                message=(e.get("status") or {}).get("message", ""),
                terminating=bool(e.get("spec", {}).get("terminate")),
            )
            for e in exp_items
            if _owned_by(e, uid)
        ),
    )
    return Observed(
        world=world,
        replica_sets={rs["metadata"]["name"]: rs for rs in owned},
        runs={r["metadata"]["name"]: r for r in run_items},
        templates={k: body for k, body in templates if body is not None},
    )


def _group_of(label: str, by_label: dict[str, str]) -> str:
    """The name of the group whose server-group label is `label` (itself when none is)."""
    return by_label.get(label, label)


def _named_selector(state: ServiceState, by_label: dict[str, str]) -> ServiceState:
    group = state.selector.get(LABEL_GROUP)
    if group is None or _group_of(group, by_label) == group:
        return state
    selector = {**state.selector, LABEL_GROUP: _group_of(group, by_label)}
    return ServiceState(state.name, exists=state.exists, selector=selector)


async def _experiments(
    kube: Kube, rollout: Rollout, ns: str, selector: str, deadline: Deadline
) -> list[dict[str, Any]]:
    """The rollout's Experiments: read only when a step runs one."""
    canary = rollout.spec.strategy.canary
    if canary is None or not any(s.experiment is not None for s in canary.steps):
        return []
    return await kube.list(EXPERIMENTS.url(ns), deadline=deadline, labels=selector)


async def _empty() -> list[dict[str, Any]]:
    return []


async def _ready(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def _owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    """Ours only if the owner reference names this very Rollout (a re-created one has a new uid)."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("kind") == "Rollout" for ref in refs)


def group_from(rs: dict[str, Any]) -> ServerGroup:
    meta, spec, status = rs["metadata"], rs.get("spec", {}), rs.get("status", {})
    labels = meta.get("labels", {})
    kind: GroupKind = "baseline" if labels.get(LABEL_KIND) == "baseline" else "release"
    return ServerGroup(
        name=meta["name"],
        revision=int(labels.get(LABEL_REVISION, "0") or 0),
        pod_hash=labels.get(LABEL_HASH, ""),
        kind=kind,
        replicas=int(spec.get("replicas", 0) or 0),
        ready=int(status.get("readyReplicas", 0) or 0),
        available=int(status.get("availableReplicas", 0) or 0),
        settled=int(status.get("observedGeneration", 0) or 0)
        >= int(meta.get("generation", 0) or 0),
        created_at=_time(meta.get("creationTimestamp")),
    )


def run_from(run: dict[str, Any]) -> AnalysisRunView:
    meta, spec, status = run["metadata"], run.get("spec", {}), run.get("status") or {}
    labels = meta.get("labels", {})
    step = labels.get("herdsman.dev/step")
    return AnalysisRunView(
        name=meta["name"],
        kind=labels.get("herdsman.dev/analysis-kind", "step"),
        revision=int(labels.get(LABEL_REVISION, "0") or 0),
        step_index=int(step) if step not in (None, "") else None,
        attempt=int(labels.get("herdsman.dev/attempt", "0") or 0),
        phase=status.get("phase") or "Pending",
        message=status.get("message", ""),
        terminated=bool(spec.get("terminate")),
    )


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _pod_ready(pod: dict[str, Any]) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False
