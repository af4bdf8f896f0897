"""Writes beyond the server groups: the referenced Deployment's size and role metadata on pods.

Both run after the pass's status is saved, so neither acts on a decision that was not kept, and
both are idempotent: a pass that dies half-way is finished by the next one.
"""

from __future__ import annotations

import logging
from typing import Any

from herdsman.api.rollout import Rollout, RolloutStatus
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import ANALYSIS_RUNS, DEPLOYMENTS, PODS, Kube, KubeError
from herdsman.engine.history import runs_to_delete
from herdsman.engine.metadata import managed_keys, pod_patch, roles
from herdsman.engine.workload import deployment_replicas
from herdsman.naming import LABEL_GROUP, LABEL_ROLLOUT, label_value

log = logging.getLogger("herdsman.workload")


async def scale_deployment(
    kube: Kube,
    rollout: Rollout,
    deployment: dict[str, Any],
    status: RolloutStatus,
    deadline: Deadline,
) -> None:
    """Scale the workloadRef Deployment per scaleDown, through its scale subresource."""
    ref = rollout.spec.workload_ref
    current = (deployment.get("spec") or {}).get("replicas", 1)
    wanted = deployment_replicas(rollout, status, current)
    if ref is None or wanted is None:
        return
    ns = rollout.metadata.namespace or "default"
    await kube.patch(
        DEPLOYMENTS.url(ns, ref.name, "scale"), {"spec": {"replicas": wanted}}, deadline=deadline
    )
    log.info(
        "%s/%s rev=%s: Deployment %s scaled %d -> %d (workloadRef.scaleDown: %s)",
        ns,
        rollout.metadata.name,
        status.current_revision,
        ref.name,
        current,
        wanted,
        ref.scale_down,
    )


async def label_pods(
    kube: Kube,
    rollout: Rollout,
    status: RolloutStatus,
    replica_sets: dict[str, dict[str, Any]],
    deadline: Deadline,
) -> None:
    """Give each pod its group's role metadata (ephemeral labels and annotations), in place."""
    keys = managed_keys(rollout)
    if not keys[0] and not keys[1]:
        return
    ns = rollout.metadata.namespace or "default"
    name = rollout.metadata.name
    wanted = roles(rollout, status)
    selector = f"{LABEL_ROLLOUT}={label_value(name)}"
    pods = await kube.list(PODS.url(ns), deadline=deadline, labels=selector)
    by_label = {label_value(group): group for group in replica_sets}  # pods carry label values
    patched: dict[str, int] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        label = (meta.get("labels") or {}).get(LABEL_GROUP, "")
        group = by_label.get(label, label)
        rs = replica_sets.get(group)
        if rs is None or meta.get("deletionTimestamp"):
            continue  # a group created this pass: its pods are labelled by the next
        template_meta = ((rs.get("spec") or {}).get("template") or {}).get("metadata") or {}
        patch = pod_patch(meta, template_meta, wanted.get(group), keys)
        if patch is None:
            continue
        try:
            await kube.patch(PODS.url(ns, meta["name"]), patch, deadline=deadline)
        except KubeError as err:
            if not err.not_found:  # a pod that just went away needs no labels
                raise
        patched[group] = patched.get(group, 0) + 1
    for group, count in sorted(patched.items()):
        role = "role metadata" if group in wanted else "no role metadata"
        log.info(
            "%s/%s rev=%s: %s on %d pods of %s",
            ns,
            name,
            status.current_revision,
            role,
            count,
            group,
        )


async def prune_runs(
    kube: Kube,
    rollout: Rollout,
    status: RolloutStatus,
    runs: dict[str, dict[str, Any]],
    deadline: Deadline,
) -> None:
    """Delete finished AnalysisRuns beyond spec.analysis's history limits."""
    ns = rollout.metadata.namespace or "default"
    uid = rollout.metadata.uid
    owned = {
        name: body
        for name, body in runs.items()
        if any(o.get("uid") == uid for o in body.get("metadata", {}).get("ownerReferences") or [])
    }
    doomed = runs_to_delete(rollout, status, owned)
    for name in doomed:
        await kube.delete(ANALYSIS_RUNS.url(ns, name), deadline=deadline)
    if doomed:
        log.info(
            "%s/%s rev=%s: deleted %d finished analysis runs beyond spec.analysis limits: %s",
            ns,
            rollout.metadata.name,
            status.current_revision,
            len(doomed),
            ", ".join(doomed),
        )
