"""Benchmark: a failing measurement recorded -> traffic at 0% canary, on the real control plane.

Each round a canary at 20% meets an analysis step whose web metric answers {"healthy": false}.
The delay is measured from the failing measurement's own `finishedAt` (written into the
AnalysisRun) to the moment a watch sees the canary ReplicaSet scaled to 0 — in replica-ratio
mode that is the canary's traffic gone. Goal: under 1 s. Run: python tests/bench/bench_rollback.py
"""

from __future__ import annotations

import json
import queue
import secrets
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import watch
from kubernetes.client import AppsV1Api

from harness import cluster as cluster_mod
from harness.operator import OperatorProcess
from harness.rollouts import Rollouts, rollout
from herdsman.cli import actions
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES
from herdsman.cluster.kube import Path as KPath

ROUNDS = 10
NAMESPACES = KPath("", "v1", "namespaces", namespaced=False)


class Unhealthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"healthy": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Unhealthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cluster = cluster_mod.start()
    ns = f"bench-{secrets.token_hex(3)}"
    cluster.rest.create(
        NAMESPACES.url(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    op = OperatorProcess(
        cluster=cluster, namespaces=[ns], log_path=Path(f"/tmp/herdsman-bench-{ns}.log")
    ).start()
    scaled: queue.Queue[tuple[datetime, str]] = queue.Queue()
    stop = threading.Event()

    def watcher() -> None:
        api = AppsV1Api(cluster_mod.api_client(cluster))
        w = watch.Watch()
        while not stop.is_set():
            for ev in w.stream(
                api.list_namespaced_replica_set, ns, timeout_seconds=5, _request_timeout=10
            ):
                obj = ev["raw_object"]
                if obj["spec"].get("replicas") == 0:
                    scaled.put((datetime.now(UTC), obj["metadata"]["name"]))

    threading.Thread(target=watcher, daemon=True).start()
    delays: list[float] = []
    try:
        ro = Rollouts(cluster, ns)
        template = {
            "apiVersion": "herdsman.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "health"},
            "spec": {
                "metrics": [
                    {
                        "name": "healthy",
                        "successCondition": "result == true",
                        "provider": {
                            "web": {
                                "url": f"http://127.0.0.1:{server.server_port}/health",
                                "jsonPath": "$.healthy",
                            }
                        },
                    }
                ]
            },
        }
        ro.rest.create(ANALYSIS_TEMPLATES.url(ns), template)
        steps = [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "health"}]}}]
        ro.create(rollout(replicas=10, steps=steps))
        ro.wait_healthy("checkout-v001")
        for i in range(ROUNDS):
            revision = 2 + i
            canary = f"checkout-v{revision:03d}"
            while not scaled.empty():
                scaled.get_nowait()
            actions.set_image(ro.rest, ns, "checkout", "app", f"registry.k8s.io/pause:bench-{i}")
            ro.wait_phase("Degraded", timeout=60)
            deadline = time.monotonic() + 10
            seen = None
            while seen is None and time.monotonic() < deadline:
                at, name = scaled.get(timeout=10)
                if name == canary:
                    seen = at
            assert seen is not None, "the canary was never scaled to 0"
            run = ro.rest.get(ANALYSIS_RUNS.url(ns, f"{canary}-step1-a0"))
            assert run is not None
            finished = run["status"]["metricResults"][0]["measurements"][-1]["finishedAt"]
            recorded = datetime.fromisoformat(finished.replace("Z", "+00:00"))
            delays.append((seen - recorded).total_seconds())
            # Back to the stable template: the aborted canary is abandoned, the next round starts clean.
            actions.undo(ro.rest, ns, "checkout", to_revision=1)
            ro.wait_healthy("checkout-v001")
    finally:
        stop.set()
        op.stop()
        server.shutdown()
        cluster.rest.delete(NAMESPACES.url(None, ns))
        cluster_mod.stop(cluster)
    ms = sorted(d * 1000 for d in delays)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(
        f"failing measurement recorded -> canary at 0%: median {statistics.median(ms):.0f} ms,"
        f" p95 {p95:.0f} ms, max {ms[-1]:.0f} ms (n={len(ms)}; goal <= 1000 ms)"
    )
    return 0 if ms[-1] <= 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
