"""spec.workloadRef on the real control plane: a Deployment is the template source, the Rollout
follows its edits through a canary, and the Deployment is scaled down per scaleDown."""

from __future__ import annotations

from typing import Any

import pytest

from harness.cluster import wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V1, IMAGE_V2, Rollouts, rollout
from herdsman.cli import actions
from herdsman.cluster.kube import DEPLOYMENTS, REPLICA_SETS, ROLLOUTS
from herdsman.naming import LABEL_ROLLOUT

pytestmark = pytest.mark.e2e

STEPS = [{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {}}]


def errors(operator: OperatorProcess) -> list[str]:
    # Kopf's watch retries while the API server's storage for a just-applied CRD initializes.
    return [e for e in operator.errors() if "storage is (re)initializing" not in e]


def deployment(replicas: int = 4, image: str = IMAGE_V1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "checkout"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def ref_rollout(scale_down: str | None, replicas: int = 4) -> dict[str, Any]:
    body = rollout(replicas=replicas, steps=STEPS)
    del body["spec"]["template"]
    del body["spec"]["selector"]
    body["spec"]["workloadRef"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "checkout",
    }
    if scale_down is not None:
        body["spec"]["workloadRef"]["scaleDown"] = scale_down
    return body


def dep_replicas(rollouts: Rollouts) -> tuple[int, int]:
    body = rollouts.rest.get(DEPLOYMENTS.url(rollouts.ns, "checkout"))
    assert body is not None
    return body["spec"].get("replicas", 1), (body.get("status") or {}).get("availableReplicas", 0)


def wait_deployment(rollouts: Rollouts, wanted: tuple[int, int], timeout: float = 60.0) -> None:
    wait_until(
        lambda: dep_replicas(rollouts) == wanted,
        timeout=timeout,
        what=f"Deployment at {wanted}",
        describe=lambda: f"deployment={dep_replicas(rollouts)} status={rollouts.status()}",
    )


def set_deployment_image(rollouts: Rollouts, image: str) -> None:
    template = deployment(image=image)["spec"]["template"]
    rollouts.rest.patch(DEPLOYMENTS.url(rollouts.ns, "checkout"), {"spec": {"template": template}})


def test_a_workload_ref_rollout_canaries_a_deployment_edit_and_drains_it_progressively(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.rest.create(DEPLOYMENTS.url(rollouts.ns), deployment())
    wait_deployment(rollouts, (4, 4))
    rollouts.create(ref_rollout("progressively"))
    rollouts.wait_healthy("checkout-v001")
    # progressively: the Deployment gave up one pod per available Rollout pod, down to none.
    wait_deployment(rollouts, (0, 0))
    group = rollouts.groups()["checkout-v001"]
    assert group["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V1

    # Editing the Deployment's template is a new revision, rolled out through the steps.
    set_deployment_image(rollouts, IMAGE_V2)
    status = rollouts.wait_phase("Paused", step="4/4", timeout=60)
    assert status["canaryServerGroup"] == "checkout-v002"
    assert rollouts.sizes()["checkout-v002"] == (2, 2)
    assert (
        rollouts.groups()["checkout-v002"]["spec"]["template"]["spec"]["containers"][0]["image"]
        == IMAGE_V2
    )
    assert dep_replicas(rollouts) == (0, 0)  # the Deployment never comes back while progressing
    actions.promote(rollouts.rest, rollouts.ns, "checkout", full=True)
    rollouts.wait_healthy("checkout-v002")
    assert dep_replicas(rollouts) == (0, 0)
    assert not errors(operator)


def test_onsuccess_scales_the_deployment_down_once_healthy_and_never_leaves_it(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.rest.create(DEPLOYMENTS.url(rollouts.ns), deployment(replicas=2))
    wait_deployment(rollouts, (2, 2))
    rollouts.create(ref_rollout("onsuccess", replicas=2))
    rollouts.wait_healthy("checkout-v001")
    wait_deployment(rollouts, (0, 0))

    # never: a second Rollout on another Deployment leaves that Deployment's pods running.
    other = deployment(replicas=2)
    other["metadata"]["name"] = "cart"
    other["spec"]["selector"]["matchLabels"] = {"app": "cart"}
    other["spec"]["template"]["metadata"]["labels"] = {"app": "cart"}
    rollouts.rest.create(DEPLOYMENTS.url(rollouts.ns), other)
    body = ref_rollout("never", replicas=2)
    body["metadata"]["name"] = "cart"
    body["spec"]["workloadRef"]["name"] = "cart"
    body["spec"]["strategy"]["canary"].update(stableService="cart", canaryService="cart-canary")
    rollouts.create(body)
    rollouts.wait_healthy("cart-v001", name="cart")
    cart = rollouts.rest.get(DEPLOYMENTS.url(rollouts.ns, "cart"))
    assert cart is not None
    assert cart["spec"]["replicas"] == 2

    # Removing a Rollout leaves its Deployment as it is (not owned, so not collected): with
    # `never` it kept serving all along.
    rollouts.rest.delete(ROLLOUTS.url(rollouts.ns, "cart"))
    wait_until(
        lambda: (
            not rollouts.rest.list(REPLICA_SETS.url(rollouts.ns), labels=f"{LABEL_ROLLOUT}=cart")
        ),
        timeout=60,
        what="the cart Rollout's groups collected",
    )
    cart = rollouts.rest.get(DEPLOYMENTS.url(rollouts.ns, "cart"))
    assert cart is not None
    assert (cart["spec"]["replicas"], cart["status"].get("availableReplicas")) == (2, 2)
    assert not errors(operator)


def test_a_workload_ref_to_a_missing_deployment_is_invalid_spec_until_it_appears(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(ref_rollout("onsuccess", replicas=2))
    status = rollouts.wait_phase("Degraded")
    condition = next(c for c in status["conditions"] if c["type"] == "InvalidSpec")
    assert "spec.workloadRef.name: Deployment 'checkout' not found" in condition["message"]
    assert rollouts.groups() == {}  # nothing created, nothing touched
    # The Deployment appears: its watch wakes the Rollout, which starts from it.
    rollouts.rest.create(DEPLOYMENTS.url(rollouts.ns), deployment(replicas=2))
    rollouts.wait_healthy("checkout-v001", timeout=30)
    wait_deployment(rollouts, (0, 0))


def test_set_image_on_a_workload_ref_rollout_edits_the_deployment_and_undo_goes_back(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.rest.create(DEPLOYMENTS.url(rollouts.ns), deployment())
    rollouts.create(ref_rollout(None))
    rollouts.wait_healthy("checkout-v001")
    # The plugin's template edit goes where the template lives: the Deployment.
    assert actions.set_images(rollouts.rest, rollouts.ns, "checkout", {"app": IMAGE_V2}) == {
        "app": IMAGE_V2
    }
    dep = rollouts.rest.get(DEPLOYMENTS.url(rollouts.ns, "checkout"))
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V2
    assert "template" not in rollouts.get()["spec"]  # the Rollout stays a pure reference
    status = rollouts.wait_phase("Paused", step="4/4", timeout=60)
    assert status["canaryServerGroup"] == "checkout-v002"
    assert (
        rollouts.groups()["checkout-v002"]["spec"]["template"]["spec"]["containers"][0]["image"]
        == IMAGE_V2
    )
    # undo puts revision 1's template back into the Deployment: the stable group again.
    assert actions.undo(rollouts.rest, rollouts.ns, "checkout") == 1
    dep = rollouts.rest.get(DEPLOYMENTS.url(rollouts.ns, "checkout"))
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V1
    rollouts.wait_healthy("checkout-v001")
    assert not errors(operator)
