"""Ephemeral metadata on the real control plane: role labels move between groups' pods on
promotion, patched in place, with no pod restarted (pod UIDs unchanged)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.cluster import wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, blue_green, rollout
from herdsman.cli import actions
from herdsman.naming import LABEL_GROUP

pytestmark = pytest.mark.e2e


def roles_by_group(rollouts: Rollouts) -> dict[str, set[tuple[str | None, str | None]]]:
    """Group -> the set of (role label, note annotation) its pods carry."""
    out: dict[str, set[tuple[str | None, str | None]]] = {}
    for pod in rollouts.pods():
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        group = meta["labels"].get(LABEL_GROUP)
        out.setdefault(group, set()).add(
            (meta["labels"].get("role"), (meta.get("annotations") or {}).get("note"))
        )
    return out


def uids(rollouts: Rollouts, group: str) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in rollouts.pods()
        if p["metadata"]["labels"].get(LABEL_GROUP) == group
        and not p["metadata"].get("deletionTimestamp")
    }


def wait_roles(rollouts: Rollouts, wanted: dict[str, Any]) -> None:
    wait_until(
        lambda: roles_by_group(rollouts) == wanted,
        timeout=30,
        what=f"pod roles {wanted}",
        describe=lambda: f"roles={roles_by_group(rollouts)} status={rollouts.status()}",
    )


def test_canary_labels_become_stable_labels_on_promotion_without_a_restart(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(
        rollout(
            replicas=4,
            steps=[{"setWeight": 50}, {"pause": {}}],
            canaryMetadata={"labels": {"role": "canary"}, "annotations": {"note": "under test"}},
            stableMetadata={"labels": {"role": "stable"}},
        )
    )
    rollouts.wait_healthy("checkout-v001")
    wait_roles(rollouts, {"checkout-v001": {("stable", None)}})

    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    wait_roles(
        rollouts,
        {"checkout-v001": {("stable", None)}, "checkout-v002": {("canary", "under test")}},
    )
    canary_pods = uids(rollouts, "checkout-v002")
    assert len(canary_pods) == 2
    # The group's template is never changed: the role lives on the pods only.
    template = rollouts.groups()["checkout-v002"]["spec"]["template"]["metadata"]
    assert "role" not in template["labels"]

    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_healthy("checkout-v002")
    wait_until(
        lambda: "checkout-v001" not in roles_by_group(rollouts),
        timeout=30,
        what="the old group's pods gone",
    )
    wait_roles(rollouts, {"checkout-v002": {("stable", None)}})
    after = uids(rollouts, "checkout-v002")
    # The canary's own pods were relabelled in place: same names, same UIDs.
    assert {n: after[n] for n in canary_pods} == canary_pods
    assert not [e for e in operator.errors() if "storage is (re)initializing" not in e]


def test_blue_green_preview_labels_become_active_labels(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(
        blue_green(
            replicas=2,
            autoPromotionEnabled=False,
            activeMetadata={"labels": {"role": "active"}},
            previewMetadata={"labels": {"role": "preview"}},
        )
    )
    rollouts.wait_healthy("checkout-v001")
    wait_roles(rollouts, {"checkout-v001": {("active", None)}})
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused")
    wait_roles(
        rollouts, {"checkout-v001": {("active", None)}, "checkout-v002": {("preview", None)}}
    )
    preview_pods = uids(rollouts, "checkout-v002")
    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_healthy("checkout-v002")
    wait_until(
        lambda: roles_by_group(rollouts).get("checkout-v002") == {("active", None)},
        timeout=30,
        what="the promoted group active",
        describe=lambda: f"roles={roles_by_group(rollouts)}",
    )
    assert uids(rollouts, "checkout-v002") == preview_pods
