"""Two operator replicas on one cluster: exactly one acts; when it goes, the other carries on.

The replicas are started the way the chart's Deployment starts its pods — its own command line
(`--priority=startup`, which ranks each pod by its start time, `--require-peering`, the peering
name and lifetime), the chart's KopfPeering, the chart's ServiceAccount token — only as processes
here instead of containers (KWOK runs none). Ports are moved apart (two processes, one host) and
the log format is plain so the test can read the transitions.

Kopf peering: each replica writes a keep-alive (the chart's lifetime, 15 s) into the peering object; the one
with the highest priority acts, the others pause; on a tie all pause. A replica that stops
cleanly withdraws its keep-alive, so the standby resumes at once; one that crashes is trusted
until its keep-alive expires, so the standby resumes within the lifetime.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.cluster import Cluster, wait_until
from harness.operator import ChartReplicas, OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from herdsman.cli import actions

pytestmark = pytest.mark.e2e

PEERING_LIFETIME = 15.0  # the chart's --peering-lifetime (a test of the chart checks it)
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {"duration": "1s"}}]


@pytest.fixture
def replicas(
    cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ChartReplicas]:
    made = ChartReplicas(cluster, namespace, tmp_path)
    yield made
    made.close()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for process in made.processes:
            print(f"\n----- {process.log_path.name} -----\n{process.log()[-5000:]}")


def two_replicas(replicas: ChartReplicas) -> tuple[OperatorProcess, OperatorProcess]:
    """Start two replicas, the older first; both are in the peering before the test goes on."""
    older = replicas.start("herdsman-pod-a")
    newer = replicas.start("herdsman-pod-b")
    peers = wait_until(
        lambda: (lambda p: p if {"herdsman-pod-a", "herdsman-pod-b"} <= set(p) else None)(
            replicas.peers()
        ),
        timeout=30,
        what="both replicas in the peering",
    )
    # The chart's shell line gave each its start time: the older has the higher priority.
    assert peers["herdsman-pod-a"]["priority"] > peers["herdsman-pod-b"]["priority"]
    return older, newer


def paused_canary(rollouts: Rollouts) -> None:
    rollouts.create(rollout(replicas=4, steps=STEPS))
    rollouts.wait_healthy("checkout-v001", timeout=60)
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/4", timeout=60)


def takeover(rollouts: Rollouts, stop_leader: Callable[[], None]) -> float:
    """Stop the leader, ask to promote at once, and time until the rollout moves again."""
    started = time.monotonic()
    stop_leader()
    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait(
        lambda s: s.get("step") != "2/4",
        timeout=PEERING_LIFETIME + 30,
        what="the standby to take over",
    )
    return time.monotonic() - started


def test_one_replica_acts_and_the_standby_finishes_the_rollout_after_a_crash(
    rollouts: Rollouts, replicas: ChartReplicas
) -> None:
    leader, standby = two_replicas(replicas)
    paused_canary(rollouts)
    # The leader's lines for both steps are out before it is killed: a kill between a status
    # write and its line would lose the line, and the counts below would mean nothing.
    assert "Initialized" in leader.logged("checkout", "Initialized", "StepStarted", "StepStarted")
    assert standby.transitions() == [], "the standby acted while the leader was alive"

    seconds = takeover(rollouts, leader.kill)  # SIGKILL: no goodbye in the peering
    print(f"\ntakeover after the leader was killed: {seconds:.1f}s")
    rollouts.wait_healthy("checkout-v002", timeout=60)
    assert seconds <= PEERING_LIFETIME + 15
    reasons = standby.logged("checkout", "Promoted", "RolloutCompleted")
    assert "Promoted" in reasons
    assert reasons.count("RolloutCompleted") == 1
    # Nothing was created twice and no step announced twice across the takeover.
    assert set(rollouts.groups()) == {"checkout-v001", "checkout-v002"}
    assert (
        leader.reasons("checkout").count("StepStarted") == 2
    )  # setWeight, pause: before the crash
    # setWeight 60, pause 1s
    assert standby.logged("checkout", "StepStarted", "StepStarted").count("StepStarted") == 2
    assert not standby.errors()


def test_a_leader_that_stops_cleanly_hands_over_at_once(
    rollouts: Rollouts, replicas: ChartReplicas
) -> None:
    leader, standby = two_replicas(replicas)
    paused_canary(rollouts)
    seconds = takeover(rollouts, leader.stop)  # SIGTERM: a drain or a rolling upgrade
    print(f"\ntakeover after the leader stopped: {seconds:.1f}s")
    assert seconds < 10
    rollouts.wait_healthy("checkout-v002", timeout=60)
    assert standby.logged("checkout", "RolloutCompleted").count("RolloutCompleted") == 1
    # The leader withdrew from the peering when it stopped; the standby alone remains.
    assert set(replicas.peers()) == {"herdsman-pod-b"}


def test_a_restarted_replica_joins_as_the_standby_and_preempts_nobody(
    rollouts: Rollouts, replicas: ChartReplicas
) -> None:
    leader, standby = two_replicas(replicas)
    leader.stop()
    wait_until(lambda: set(replicas.peers()) == {"herdsman-pod-b"}, timeout=15, what="handover")
    leader.start()  # the container restarts: a new start time, the lowest priority
    peers = wait_until(
        lambda: (lambda p: p if len(p) == 2 else None)(replicas.peers()),
        timeout=30,
        what="the restarted replica in the peering",
    )
    assert peers["herdsman-pod-b"]["priority"] > peers["herdsman-pod-a"]["priority"]
    rollouts.create(rollout(replicas=2, steps=[{"setWeight": 50}]))
    rollouts.wait_healthy("checkout-v001", timeout=60)
    assert "Initialized" in standby.logged("checkout", "Initialized")
    assert leader.transitions() == []


def test_two_replicas_with_the_same_priority_both_pause(
    cluster: Cluster, rollouts: Rollouts, replicas: ChartReplicas, tmp_path: Path
) -> None:
    """Why the chart gives every pod its own priority: on a tie Kopf pauses everyone."""
    same = [
        OperatorProcess(
            cluster=cluster,
            namespaces=[rollouts.ns],
            log_path=tmp_path / f"same-{n}.log",
            standalone=False,
            extra_args=["--require-peering", f"--peering={replicas.release}", "--priority=5"],
        ).start()
        for n in (1, 2)
    ]
    replicas.processes += same
    wait_until(lambda: len(replicas.peers()) == 2, timeout=30, what="both in the peering")
    rollouts.create(rollout(replicas=2, steps=[{"setWeight": 50}]))
    time.sleep(5)
    assert rollouts.status() == {}, "an operator acted despite the tie"
    for process in same:
        assert "Possibly conflicting operators with the same priority" in process.log()
        assert process.transitions() == []
