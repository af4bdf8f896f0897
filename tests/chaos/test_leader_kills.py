"""Two replicas as the chart runs them; the leader is SIGKILLed in the middle of release after
release, and the standby finishes each one with every promise kept.

Kopf peering (see tests/e2e/test_ha.py): the oldest replica leads (`--priority=startup`), so a
killed leader, restarted, rejoins as the standby; the other takes over once the dead one's
keep-alive expires (the chart's lifetime).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.chaosreport import HA_KILLS, REPORT
from harness.cluster import Cluster
from harness.invariants import Invariants, settle
from harness.operator import ChartReplicas, OperatorProcess
from harness.rollouts import Rollouts, rollout
from herdsman.cluster.kube import ROLLOUTS

pytestmark = pytest.mark.chaos

STEPS = [{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}]


@pytest.fixture
def replicas(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[ChartReplicas]:
    made = ChartReplicas(cluster, namespace, tmp_path)
    yield made
    made.close()


def test_the_leader_killed_mid_release_again_and_again(
    cluster: Cluster, namespace: str, rollouts: Rollouts, replicas: ChartReplicas
) -> None:
    rng = random.Random(16)
    # Oldest first: the head of the list is the leader.
    alive: list[OperatorProcess] = [replicas.start("pod-0"), replicas.start("pod-1")]
    check = Invariants(cluster.rest, namespace).start()
    kills = 0
    try:
        rollouts.create(rollout("ha", replicas=4, steps=STEPS))
        rollouts.wait_healthy("ha-v001", name="ha", timeout=60 + replicas.peering_lifetime)
        for revision in range(2, HA_KILLS + 2):
            body = rollouts.get("ha")
            container = body["spec"]["template"]["spec"]["containers"][0]
            container["env"] = [{"name": "RELEASE", "value": str(revision)}]
            rollouts.rest.patch(
                ROLLOUTS.url(namespace, "ha"), {"spec": {"template": body["spec"]["template"]}}
            )
            time.sleep(rng.uniform(0.2, 3.0))
            leader = alive.pop(0)
            leader.kill()
            kills += 1
            alive.append(replicas.start(f"pod-{revision}"))
            rollouts.wait_healthy(
                f"ha-v{revision:03d}", name="ha", timeout=60 + replicas.peering_lifetime
            )
        settle(check)
        assert set(rollouts.groups("ha")) == {f"ha-v{r:03d}" for r in range(1, HA_KILLS + 2)}
        for process in replicas.processes:
            crashes = [line for line in process.log().splitlines() if "Traceback" in line]
            assert not crashes, crashes[:5]
    finally:
        REPORT.leader_kills += kills
        violations = check.stop()
        for v in violations:
            REPORT.violation(f"leader kills: {v}")
    assert not violations, violations
