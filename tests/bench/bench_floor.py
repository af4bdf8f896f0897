"""Benchmark: the control plane's own floor for bench_scale's release (issue 17).

bench_scale measures N Herdsman releases started at once. Its two latency goals (a new server
group within 250 ms at p99, all 1,000 releases done within 30 s) are asked of the operator, but
on a 2-core machine most of the CPU in that phase goes to the control plane: the API server,
etcd, the ReplicaSet controller, the scheduler and KWOK creating, binding, starting and
deleting pods. This script asks what the control plane alone needs for the same release, with
no Python in the loop: N Deployments (Kubernetes' own controller, in Go, inside
kube-controller-manager) with the same pod template, 2 replicas, the same KWOK node room, and
a rolling update that surges one pod at a time (maxSurge 1, maxUnavailable 0: the pods a
Herdsman canary of setWeight 50 on 2 replicas creates and deletes).

Phases, as in bench_scale: create N -> all Available; patch every template at once -> each
Deployment's new ReplicaSet seen on a watch (p50/p95/p99/max from the patch's send) -> all
rolled out (observedGeneration current, 2 updated, 2 available, no old pods left), with the
spread per Deployment and the new ReplicaSet's latency from the patch's answer too. Printed
with the control plane's CPU seconds per phase and every client's API requests.

What it does not have that a Herdsman release has: the 5 s pause step, status and Events on a
custom resource, and a controller outside the control plane (a process of its own, in Python).
So it is a floor, not a like-for-like rival: bench_scale's release is not expected to finish
sooner on the same machine.

Run: make bench-floor N=1000   (N defaults to 100; PHASE_TIMEOUT, APISERVER_PROFILE and
APISERVER_SECONDS as in bench_scale)
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scale import (
    IMAGE_V2,
    NAMESPACES,
    NODES,
    PODS_PER_ROLLOUT,
    TIMEOUT,
    ControlPlane,
    N,
    add_pod_room,
    latencies,
    patch_all,
    profile_apiserver,
    requests_total,
    spread,
    timed_out,
    watch_events,
)
from kubernetes.client import AppsV1Api

from harness import cluster as cluster_mod
from harness.rollouts import IMAGE_V1
from herdsman.cluster.kube import Path as KPath

DEPLOYMENTS = KPath("apps", "v1", "deployments")
REPLICAS = 2


def deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": IMAGE_V1}]},
            },
        },
    }


def rolled_out(obj: dict[str, Any]) -> int:
    """The generation this Deployment has fully rolled out, or 0 while it is still moving."""
    meta, status = obj["metadata"], obj.get("status") or {}
    generation = int(meta.get("generation", 0))
    done = (
        int(status.get("observedGeneration", 0)) >= generation
        and status.get("updatedReplicas") == REPLICAS
        and status.get("availableReplicas") == REPLICAS
        and status.get("replicas") == REPLICAS  # the old ReplicaSet's pods are gone
    )
    return generation if done else 0


class Tracker:
    """Watches Deployments and ReplicaSets; records when each Deployment reached what."""

    def __init__(self, cluster: cluster_mod.Cluster, ns: str) -> None:
        self.cluster, self.ns = cluster, ns
        self.changed = threading.Condition()
        self.done: dict[str, int] = {}  # deployment -> generation fully rolled out
        self.done_at: dict[tuple[str, int], float] = {}  # (deployment, generation) -> when
        self.new_group_seen: dict[str, float] = {}  # deployment -> first v2 ReplicaSet ADDED
        self.stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._deployments, daemon=True).start()
        threading.Thread(target=self._groups, daemon=True).start()

    def _deployments(self) -> None:
        api = AppsV1Api(cluster_mod.api_client(self.cluster))
        for ev in watch_events(self.stop, "deployments", api.list_namespaced_deployment, self.ns):
            obj = ev["raw_object"]
            with self.changed:
                name, generation = obj["metadata"]["name"], rolled_out(obj)
                self.done[name] = generation
                self.done_at.setdefault((name, generation), time.perf_counter())
                self.changed.notify_all()

    def _groups(self) -> None:
        api = AppsV1Api(cluster_mod.api_client(self.cluster))
        for ev in watch_events(self.stop, "replicasets", api.list_namespaced_replica_set, self.ns):
            at = time.perf_counter()
            obj = ev["raw_object"]
            image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
            owners = obj["metadata"].get("ownerReferences") or [{}]
            if image == IMAGE_V2 and owners[0].get("name"):
                with self.changed:
                    self.new_group_seen.setdefault(owners[0]["name"], at)

    def wait_all(self, names: list[str], generation: int) -> float:
        end = time.monotonic() + TIMEOUT
        with self.changed:
            while True:
                missing = sum(1 for n in names if self.done.get(n, 0) < generation)
                if missing == 0:
                    return time.perf_counter()
                if time.monotonic() > end:
                    raise TimeoutError(f"{missing} of {len(names)} Deployments not rolled out")
                self.changed.wait(timeout=1.0)


def main() -> int:
    cluster = cluster_mod.start()
    ns = f"floor-{secrets.token_hex(3)}"
    cluster.rest.create(
        NAMESPACES.url(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    nodes = add_pod_room(cluster, N * PODS_PER_ROLLOUT)
    plane = ControlPlane(Path(__file__).resolve().parents[2] / ".cluster")
    tracker = Tracker(cluster, ns)
    tracker.start()
    names = [f"d{i:05d}" for i in range(N)]
    pool = ThreadPoolExecutor(max_workers=16)
    out: list[str] = []
    failed = False
    cp0 = plane.cpu()
    try:
        time.sleep(1.0)
        cp0, q0 = plane.cpu(), requests_total(cluster)
        t0 = time.perf_counter()
        list(pool.map(lambda n: cluster.rest.create(DEPLOYMENTS.url(ns), deployment(n)), names))
        t1 = tracker.wait_all(names, 1)
        cp1, q1 = plane.cpu(), requests_total(cluster)
        out.append(f"create -> all Available: {t1 - t0:.1f} s")
        time.sleep(2.0)

        cp2, q2 = plane.cpu(), requests_total(cluster)
        profiling = profile_apiserver(cluster)
        t2 = time.perf_counter()
        sent, answered = patch_all(pool, cluster, lambda n: DEPLOYMENTS.url(ns, n), names)
        t3 = tracker.wait_all(names, 2)
        cp3, q3 = plane.cpu(), requests_total(cluster)
        for thread in profiling:
            thread.join()
        with tracker.changed:
            seen = [(tracker.new_group_seen[n] - sent[n]) * 1000 for n in names]
            after = [(tracker.new_group_seen[n] - answered[n]) * 1000 for n in names]
            done = [tracker.done_at[(n, 2)] - sent[n] for n in names]
        out.append(latencies("patch -> new ReplicaSet seen", seen))
        out.append(latencies("  from the patch's answer", after))
        out.append(
            f"patch -> all rolled out: {t3 - t2:.1f} s"
            f" (patches sent in {max(sent.values()) - t2:.1f} s)"
        )
        out.append(spread("patch -> rolled out, per Deployment", done))
        out.append(f"control plane CPU s, create: {plane.spent(cp0, cp1)}")
        out.append(f"control plane CPU s, patch: {plane.spent(cp2, cp3)}")
        out.append(
            f"API requests (all clients): create {q1 - q0:.0f}, patch {q3 - q2:.0f}"
            f" ({(q3 - q2) / N:.1f} per release)"
        )
    except TimeoutError as err:
        failed = True
        out += timed_out(err, cluster, ns, plane, cp0)
    finally:
        tracker.stop.set()
        pool.shutdown()
        cluster.rest.delete(NAMESPACES.url(None, ns))
        for node in nodes:
            cluster.rest.delete(NODES.url(None, node))
        cluster_mod.stop(cluster)
    print(f"N={N} Deployments (2 replicas, rolling update maxSurge 1, maxUnavailable 0)")
    for line in out:
        print("  " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
