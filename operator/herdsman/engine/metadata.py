"""Ephemeral metadata: labels and annotations that belong to a role, not to a revision.

Argo's `canaryMetadata`/`stableMetadata` (canary) and `activeMetadata`/`previewMetadata`
(blue/green) put labels and annotations on a group's pods while the group holds the role and
take them away when it stops (a promoted canary's pods lose the canary labels and gain the
stable ones), without restarting a pod.

Herdsman's server groups are immutable apart from their size, so, unlike Argo, the ReplicaSet's
template is never patched: the operator patches the pods themselves, in place, on every pass
(a pod the group starts later gets its role's metadata on the next pass, woken by the group's
status change). Pure functions here; the cluster layer lists the pods and sends the patches.

A key a role sets and the pod template also sets goes back to the template's value when the
role ends, never deleted; keys no role names are never touched.
"""

from __future__ import annotations

from typing import Any

from herdsman.api.pod_template import PodMetadata
from herdsman.api.rollout import Rollout, RolloutStatus


def roles(rollout: Rollout, status: RolloutStatus) -> dict[str, PodMetadata]:
    """Group name -> the role metadata its pods should carry now."""
    wanted: dict[str, PodMetadata] = {}
    strategy = rollout.spec.strategy
    if strategy.canary is not None:
        canary = strategy.canary
        if canary.stable_metadata is not None and status.stable_server_group:
            wanted[status.stable_server_group] = canary.stable_metadata
        canary_group = status.canary_server_group
        if (
            canary.canary_metadata is not None
            and canary_group
            and canary_group != status.stable_server_group
        ):
            wanted[canary_group] = canary.canary_metadata
    elif strategy.blue_green is not None:
        bg, seen = strategy.blue_green, status.blue_green
        active = (seen.active_server_group if seen else None) or status.stable_server_group
        preview = seen.preview_server_group if seen else None
        if bg.active_metadata is not None and active:
            wanted[active] = bg.active_metadata
        if bg.preview_metadata is not None and preview and preview != active:
            wanted[preview] = bg.preview_metadata
    return wanted


def managed_keys(rollout: Rollout) -> tuple[set[str], set[str]]:
    """Every label and annotation key some role of this spec sets."""
    strategy = rollout.spec.strategy
    metas: list[PodMetadata | None] = []
    if strategy.canary is not None:
        metas = [strategy.canary.canary_metadata, strategy.canary.stable_metadata]
    elif strategy.blue_green is not None:
        metas = [strategy.blue_green.active_metadata, strategy.blue_green.preview_metadata]
    labels = {k for m in metas if m is not None for k in m.labels}
    annotations = {k for m in metas if m is not None for k in m.annotations}
    return labels, annotations


def pod_patch(
    pod_meta: dict[str, Any],
    template_meta: dict[str, Any],
    wanted: PodMetadata | None,
    keys: tuple[set[str], set[str]],
) -> dict[str, Any] | None:
    """The merge patch (None values delete) that gives a pod its role's metadata; None: none."""
    patch: dict[str, Any] = {}
    for field, managed in (("labels", keys[0]), ("annotations", keys[1])):
        have: dict[str, str] = pod_meta.get(field) or {}
        base: dict[str, str] = template_meta.get(field) or {}
        role: dict[str, str] = getattr(wanted, field) if wanted is not None else {}
        changes: dict[str, str | None] = {}
        for key in sorted(managed):
            value = role.get(key, base.get(key))
            if have.get(key) != value:
                changes[key] = value
        if changes:
            patch[field] = changes
    return {"metadata": patch} if patch else None
