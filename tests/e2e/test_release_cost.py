"""Release cost as money on a real control plane: the extra pods of a release, priced by their
requests, closed into the history by the next release and summed by `kubectl herdsman cost`."""

from __future__ import annotations

import pytest

from harness.cluster import Cluster
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, IMAGE_V3, Rollouts, rollout
from herdsman.cli.main import main

pytestmark = pytest.mark.e2e


def test_a_release_is_billed_and_the_plugin_sums_it(
    operator: OperatorProcess,
    rollouts: Rollouts,
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = rollout(
        replicas=4,
        steps=[{"setWeight": 50}, {"pause": {"duration": "3s"}}],
        maxSurge="100%",
        maxUnavailable=0,
    )
    body["metadata"]["labels"] = {"team": "payments"}
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"cpu": "2", "memory": "4Gi"}}
    rollouts.create(body)
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_healthy("checkout-v002", timeout=60)
    rollouts.set_image(IMAGE_V3)
    status = rollouts.wait(
        lambda s: any(h.get("revision") == 2 for h in (s.get("cost") or {}).get("history", [])),
        what="release 2's bill in the history",
    )
    (bill,) = [h for h in status["cost"]["history"] if h["revision"] == 2]
    # Surge pods beside a full stable for several seconds: 2 cores and 4 GiB each.
    assert bill["replicaSeconds"] > 0
    assert bill["cpuCoreSeconds"] == pytest.approx(bill["replicaSeconds"] * 2)
    assert bill["memoryGibSeconds"] == pytest.approx(bill["replicaSeconds"] * 4)
    expected = (bill["cpuCoreSeconds"] * 0.0316 + bill["memoryGibSeconds"] * 0.0042) / 3600
    assert bill["amount"] == pytest.approx(expected)

    capsys.readouterr()
    flags = ["-n", rollouts.ns, "--kubeconfig", str(cluster.kubeconfig)]
    assert main(["cost", "--since", "1h", *flags]) == 0
    out = capsys.readouterr().out
    assert "checkout" in out
    assert "(namespace total)" in out
    assert "USD" in out
