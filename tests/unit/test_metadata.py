"""Ephemeral metadata (engine.metadata): role labels and annotations move with the role."""

from __future__ import annotations

from typing import Any

import pytest
from sim import manifest

from herdsman.api.pod_template import PodMetadata
from herdsman.api.rollout import Rollout, RolloutStatus
from herdsman.engine.metadata import managed_keys, pod_patch, roles

pytestmark = pytest.mark.unit

CANARY = {"labels": {"role": "canary"}, "annotations": {"note": "under test"}}
STABLE = {"labels": {"role": "stable"}}


def canary_rollout() -> Rollout:
    return Rollout.model_validate(manifest(canaryMetadata=CANARY, stableMetadata=STABLE))


def blue_green_rollout() -> Rollout:
    body = manifest()
    body["spec"]["strategy"] = {
        "blueGreen": {
            "activeService": "checkout",
            "activeMetadata": {"labels": {"role": "active"}},
            "previewMetadata": {"labels": {"role": "preview"}},
        }
    }
    return Rollout.model_validate(body)


def status(**fields: Any) -> RolloutStatus:
    return RolloutStatus.model_validate(fields)


def test_canary_and_stable_groups_get_their_roles() -> None:
    rollout = canary_rollout()
    wanted = roles(rollout, status(stableServerGroup="c-v001", canaryServerGroup="c-v002"))
    assert wanted == {
        "c-v001": PodMetadata.model_validate(STABLE),
        "c-v002": PodMetadata.model_validate(CANARY),
    }
    # Promoted: the former canary is stable, and nothing is a canary.
    wanted = roles(rollout, status(stableServerGroup="c-v002"))
    assert wanted == {"c-v002": PodMetadata.model_validate(STABLE)}


def test_blue_green_roles_follow_active_and_preview() -> None:
    rollout = blue_green_rollout()
    seen = status(
        stableServerGroup="c-v001",
        blueGreen={"activeServerGroup": "c-v001", "previewServerGroup": "c-v002"},
    )
    wanted = roles(rollout, seen)
    assert wanted["c-v001"].labels == {"role": "active"}
    assert wanted["c-v002"].labels == {"role": "preview"}


def test_a_promoted_canary_pod_swaps_its_labels_in_one_patch() -> None:
    rollout = canary_rollout()
    keys = managed_keys(rollout)
    pod = {"labels": {"app": "checkout", "role": "canary"}, "annotations": {"note": "under test"}}
    template = {"labels": {"app": "checkout"}}
    patch = pod_patch(pod, template, PodMetadata.model_validate(STABLE), keys)
    assert patch == {"metadata": {"labels": {"role": "stable"}, "annotations": {"note": None}}}


def test_a_pod_with_its_role_already_is_left_alone() -> None:
    rollout = canary_rollout()
    pod = {"labels": {"app": "checkout", "role": "stable"}}
    wanted = PodMetadata.model_validate(STABLE)
    assert pod_patch(pod, {"labels": {"app": "checkout"}}, wanted, managed_keys(rollout)) is None


def test_a_key_the_template_sets_returns_to_the_template_value() -> None:
    rollout = canary_rollout()
    pod = {"labels": {"app": "checkout", "role": "canary"}}
    template = {"labels": {"app": "checkout", "role": "web"}}
    patch = pod_patch(pod, template, None, managed_keys(rollout))
    assert patch == {"metadata": {"labels": {"role": "web"}}}


def test_keys_no_role_names_are_never_touched() -> None:
    rollout = canary_rollout()
    pod = {"labels": {"app": "checkout", "team": "shop"}, "annotations": {"x": "y"}}
    patch = pod_patch(pod, {"labels": {"app": "checkout"}}, None, managed_keys(rollout))
    assert patch is None
