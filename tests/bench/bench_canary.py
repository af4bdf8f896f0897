"""Benchmark: how fast the operator reacts, on the real control plane.

1. template change -> the new server group (ReplicaSet) exists
2. `promote` at a pause -> the next weight is applied (the canary ReplicaSet scaled to it)

Times are taken from a watch stream (the moment the API server tells a client), not from
polling, so they measure the operator plus one API round trip. Run: python tests/bench/bench_canary.py
"""

from __future__ import annotations

import queue
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import watch
from kubernetes.client import AppsV1Api

from harness import cluster as cluster_mod
from harness.operator import OperatorProcess
from harness.rollouts import Rollouts, rollout
from herdsman.cli import actions
from herdsman.cluster.kube import Path as KPath

ROUNDS = 15
NAMESPACES = KPath("", "v1", "namespaces", namespaced=False)


def watch_replicasets(
    cluster: cluster_mod.Cluster,
    ns: str,
    events: queue.Queue[tuple[float, str, dict[str, Any]]],
    stop: threading.Event,
) -> None:
    api = AppsV1Api(cluster_mod.api_client(cluster))
    w = watch.Watch()
    while not stop.is_set():
        try:
            for ev in w.stream(
                api.list_namespaced_replica_set, ns, timeout_seconds=5, _request_timeout=10
            ):
                events.put((time.perf_counter(), ev["type"], ev["raw_object"]))
                if stop.is_set():
                    break
        except Exception:
            # The cluster going away at the end cuts the stream; mid-run, a cut one is reopened
            # (a lost event then shows up as a round that times out, never as a wrong figure).
            if stop.is_set():
                return
            time.sleep(0.2)


def wait_event(
    events: queue.Queue[tuple[float, str, dict[str, Any]]], match: Any, timeout: float = 30.0
) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            at, kind, obj = events.get(timeout=0.5)
        except queue.Empty:
            continue
        if match(kind, obj):
            return at
    raise TimeoutError("event never came")


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (
        f"{name}: median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms,"
        f" min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms (n={len(ms)})"
    )


def main() -> int:
    cluster = cluster_mod.start()
    ns = f"bench-{secrets.token_hex(3)}"
    cluster.rest.create(
        NAMESPACES.url(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    log = Path(f"/tmp/herdsman-bench-{ns}.log")
    op = OperatorProcess(cluster=cluster, namespaces=[ns], log_path=log).start()
    events: queue.Queue[tuple[float, str, dict[str, Any]]] = queue.Queue()
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_replicasets, args=(cluster, ns, events, stop), daemon=True
    )
    watcher.start()
    creation: list[float] = []
    promotion: list[float] = []
    try:
        ro = Rollouts(cluster, ns)
        ro.create(
            rollout(
                replicas=10,
                steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 30}, {"pause": {}}],
            )
        )
        ro.wait_healthy("checkout-v001")
        time.sleep(1)
        for i in range(ROUNDS):
            revision = i + 2
            group = f"checkout-v{revision:03d}"
            while not events.empty():
                events.get_nowait()
            t0 = time.perf_counter()
            actions.set_image(ro.rest, ns, "checkout", "app", f"registry.k8s.io/pause:bench-{i}")
            t1 = wait_event(
                events, lambda k, o, g=group: k == "ADDED" and o["metadata"]["name"] == g
            )
            creation.append(t1 - t0)
            ro.wait_phase("Paused", step="2/4")
            time.sleep(0.3)
            while not events.empty():
                events.get_nowait()
            t0 = time.perf_counter()
            actions.promote(ro.rest, ns, "checkout")
            t1 = wait_event(
                events,
                lambda k, o, g=group: o["metadata"]["name"] == g and o["spec"].get("replicas") == 3,
            )
            promotion.append(t1 - t0)
            ro.wait_phase("Paused", step="4/4")
            actions.promote(ro.rest, ns, "checkout", full=True)
            ro.wait_healthy(group)
    finally:
        stop.set()
        op.stop()
        cluster.rest.delete(NAMESPACES.url(None, ns))
        cluster_mod.stop(cluster)
    print(summary("template change -> new server group created", creation))
    print(summary("promote -> next weight applied (canary scaled)", promotion))
    return 0


if __name__ == "__main__":
    sys.exit(main())
