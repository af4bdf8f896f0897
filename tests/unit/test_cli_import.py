"""`kubectl herdsman import`'s plan: what it takes over, and what it refuses (no cluster)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from herdsman.api.rollout import Rollout
from herdsman.cli.importing import ARGO_HASH, ImportRefused, describe, plan
from herdsman.naming import template_hash

pytestmark = pytest.mark.unit

UID = "argo-uid"


def argo(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "checkout",
            "namespace": "shop",
            "uid": UID,
            "annotations": {
                "rollout.argoproj.io/revision": "2",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "team": "payments",
            },
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": "app:2"}]},
            },
            "strategy": {
                "canary": {
                    "stableService": "checkout",
                    "canaryService": "checkout-canary",
                    "steps": [{"setWeight": 50}, {"pause": {}}],
                }
            },
        },
        "status": {"stableRS": "h2", "currentPodHash": "h2", "currentStepIndex": 2, **status},
    }


def replica_set(pod_hash: str, revision: str, image: str, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"checkout-{pod_hash}",
            "uid": f"rs-{pod_hash}",
            "labels": {"app": "checkout", ARGO_HASH: pod_hash},
            "annotations": {"rollout.argoproj.io/revision": revision},
            "ownerReferences": [{"kind": "Rollout", "uid": UID, "controller": True}],
        },
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": "checkout", ARGO_HASH: pod_hash}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def pod(name: str, rs: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "ownerReferences": [{"uid": rs, "controller": True}]}}


SETS = [replica_set("h2", "2", "app:2", 3), replica_set("h1", "1", "app:1", 0)]
PODS = [pod("a", "rs-h2"), pod("b", "rs-h2"), pod("c", "rs-h2"), pod("x", "rs-other")]


def test_a_rollout_at_rest_is_taken_over_group_by_group() -> None:
    p = plan(argo(), SETS, PODS)
    assert [(g.name, g.revision, g.stable) for g in p.groups] == [
        ("checkout-h2", 2, True),
        ("checkout-h1", 1, False),
    ]
    assert p.stable.pods == ["a", "b", "c"]
    assert p.services == ["checkout", "checkout-canary"]
    # The stable group's hash is the one the operator computes for the Rollout's template.
    rollout = Rollout.model_validate(p.manifest)
    assert p.stable.pod_hash == template_hash(rollout.spec.template.to_wire())
    # The older group's template loses Argo's hash label, and hashes apart.
    old = p.groups[1]
    assert ARGO_HASH not in old.template["metadata"]["labels"]
    assert old.pod_hash != p.stable.pod_hash
    meta = p.manifest["metadata"]
    assert meta["annotations"]["team"] == "payments"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in meta["annotations"]
    assert "rollout.argoproj.io/revision" not in meta["annotations"]
    assert meta["annotations"]["herdsman.dev/import-in-progress"] == "true"
    assert p.manifest["apiVersion"] == "herdsman.dev/v1alpha1"
    assert p.status("x")["stableServerGroup"] == "checkout-h2"
    assert p.status("x")["currentStepIndex"] == 2
    lines = describe(p)
    assert any("checkout-h2 as server group revision 2 (stable, 3 replicas)" in ln for ln in lines)


def test_replica_sets_of_others_are_left_alone() -> None:
    stranger = replica_set("zz", "7", "app:9", 2)
    stranger["metadata"]["ownerReferences"] = [{"uid": "someone", "controller": True}]
    p = plan(argo(), [*SETS, stranger], PODS)
    assert "checkout-zz" not in {g.name for g in p.groups}


def test_a_rollout_mid_canary_is_refused() -> None:
    with pytest.raises(ImportRefused, match="middle of an update"):
        plan(argo(currentPodHash="h3", currentStepIndex=1), SETS, PODS)


def test_a_blue_green_rollout_with_a_preview_up_is_refused() -> None:
    body = argo(blueGreen={"activeSelector": "h2", "previewSelector": "h3"})
    body["spec"]["strategy"] = {"blueGreen": {"activeService": "checkout"}}
    with pytest.raises(ImportRefused, match="blue/green update"):
        plan(body, SETS, PODS)


def test_a_rollout_that_never_completed_is_refused() -> None:
    with pytest.raises(ImportRefused, match=r"status\.stableRS is empty"):
        plan(argo(stableRS=None, currentPodHash="h1"), SETS, PODS)


def test_a_missing_stable_replica_set_is_refused() -> None:
    with pytest.raises(ImportRefused, match="nothing to take over"):
        plan(argo(), SETS[1:], PODS)


def test_a_spec_herdsman_refuses_is_refused_naming_the_field() -> None:
    body = copy.deepcopy(argo())
    body["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 500}]
    with pytest.raises(ImportRefused, match=r"spec\.strategy\.canary\.steps: .*setWeight"):
        plan(body, SETS, PODS)


def test_duplicate_or_missing_revisions_are_made_distinct() -> None:
    sets = [replica_set("h2", "2", "app:2", 3), replica_set("h1", "", "app:1", 0)]
    p = plan(argo(), sets, PODS)
    assert sorted(g.revision for g in p.groups) == [2, 3]


def test_an_interrupted_import_is_resumed_with_what_it_already_adopted() -> None:
    sets = copy.deepcopy(SETS)
    sets[0]["metadata"]["ownerReferences"] = [
        {"kind": "Rollout", "uid": "ours", "controller": True}
    ]
    with pytest.raises(ImportRefused, match="nothing to take over"):
        plan(argo(), sets, PODS)
    p = plan(argo(), sets, PODS, resumed_uid="ours")
    assert [g.name for g in p.groups] == ["checkout-h2", "checkout-h1"]
