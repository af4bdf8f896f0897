"""Benchmark: how long a rollout waits when the acting operator replica goes away.

Two replicas run as the chart runs them (its pod command, its KopfPeering, its ServiceAccount
token; see harness.operator.ChartReplicas). Each round a canary waits at an indefinite pause; the
leader is stopped — cleanly (SIGTERM, as in a drain or a rolling upgrade) or by SIGKILL (a crash,
at a random point of its keep-alive cycle) — a promote is requested at the same instant, and the
delay until the rollout moves again is the takeover time. The stopped replica is then started
again and joins as the standby (the newest pod has the lowest priority).

Run: python tests/bench/bench_takeover.py [ROUNDS]   (default 3 of each kind; about 4 minutes)
"""

from __future__ import annotations

import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import cluster as cluster_mod
from harness.cluster import wait_until
from harness.operator import ChartReplicas, OperatorProcess
from harness.rollouts import Rollouts, rollout
from herdsman.cli import actions
from herdsman.cluster.kube import Path as KPath

NAMESPACES = KPath("", "v1", "namespaces", namespaced=False)


def leader_of(replicas: ChartReplicas, processes: dict[str, OperatorProcess]) -> str:
    peers = replicas.peers()
    alive = {name: p for name, p in peers.items() if name in processes and p.get("lifetime")}
    return max(alive, key=lambda name: alive[name]["priority"])


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cluster = cluster_mod.start()
    ns = f"bench-takeover-{secrets.token_hex(3)}"
    cluster.rest.create(
        NAMESPACES.url(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-takeover-"))
    replicas = ChartReplicas(cluster, ns, tmp)
    results: dict[str, list[float]] = {"stop": [], "kill": []}
    try:
        processes = {name: replicas.start(name) for name in ("pod-a", "pod-b")}
        wait_until(lambda: len(replicas.peers()) == 2, timeout=30, what="two peers")
        rollouts = Rollouts(cluster, ns)
        rollouts.create(rollout(replicas=4, steps=[{"setWeight": 25}, {"pause": {}}]))
        rollouts.wait_healthy("checkout-v001", timeout=60)
        plan = ["stop"] * rounds + ["kill"] * rounds
        for n, how in enumerate(plan, start=2):
            rollouts.set_image(f"registry.k8s.io/pause:bench-{n}")
            rollouts.wait_phase("Paused", step="2/2", timeout=60)
            name = leader_of(replicas, processes)
            leader = processes[name]
            if how == "kill":
                # Somewhere in the leader's keep-alive cycle, not always just after a touch.
                time.sleep(random.uniform(0, replicas.peering_lifetime))
            started = time.monotonic()
            if how == "kill":
                leader.kill()
            else:
                leader.stop()
            actions.promote(rollouts.rest, ns, "checkout")
            rollouts.wait(lambda s: s.get("phase") != "Paused", timeout=120, what="takeover")
            seconds = time.monotonic() - started
            results[how].append(seconds)
            print(f"round {n - 1}: {how:4s} -> moved again after {seconds:5.1f}s", flush=True)
            rollouts.wait_healthy(f"checkout-v{n:03d}", timeout=60)
            leader.start()  # the container restarts and joins as the standby
            wait_until(
                lambda: len([p for p in replicas.peers().values() if p.get("lifetime")]) == 2,
                timeout=30,
                what="the restarted replica back in the peering",
            )
    finally:
        replicas.close()
        cluster.rest.delete(NAMESPACES.url(None, ns))
        cluster_mod.stop(cluster)
    for how, label in (("stop", "leader stopped (SIGTERM)"), ("kill", "leader killed (SIGKILL)")):
        values = results[how]
        if values:
            print(
                f"takeover, {label}: median {statistics.median(values):.1f}s, "
                f"min {min(values):.1f}s, max {max(values):.1f}s over {len(values)} rounds"
            )
    print(f"bound after a crash: the chart's peering lifetime, {replicas.peering_lifetime:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
