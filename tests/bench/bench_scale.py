"""Benchmark: N rollouts on one operator (issue 17), on the real control plane.

Workload (the one the issue measured Argo Rollouts with): canary, 2 replicas, setWeight 50 then
pause 5s, no traffic router (the weight is the replica ratio; ROUTER=nginx: an NGINX Ingress
per rollout carries it). Phases:

1. create N rollouts at once -> all Healthy
2. patch every template at once -> each rollout's new server group seen (p50/p95/p99/max,
   from the patch's send to the ReplicaSet's ADDED event on a watch) -> all Healthy again
3. rest: IDLE seconds with nothing to do

Printed: the phase times, the operator's RSS (peak, and settled at the end of the rest), its CPU
seconds per phase (from /proc), the number of "gave up" warnings it logged, and the API requests
per second it causes at rest.

How requests are attributed to the operator: it runs with a ServiceAccount token of its own, and
a FlowSchema sends that account's requests to a flow of their own, so the API server's
`apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}` counts exactly the operator's
requests — where API Priority and Fairness is on. The local control plane runs without it
(kwokctl --disable-qps-limits), so there the idle rate is `apiserver_request_total` at rest
minus the same rate measured for BACKGROUND seconds before the operator started (the nodes'
heartbeats, the controllers). No proxy in the path to distort timings.

Pod room: the local control plane's KWOK nodes take 110 pods each (3 nodes: 330 pods, i.e. 165
rollouts of 2 replicas). Beyond that the scheduler leaves pods Pending and rollouts can never
become Healthy — which is why N=1,000 once "did not finish" while the operator sat idle. So the
benchmark adds KWOK nodes with room for every pod the run can have at once (stable + canary +
the next revision: 4 per rollout here), and removes them afterwards.

A phase that times out still prints what was measured up to then, how many rollouts were left
and why (pods Pending, the operator's warnings), instead of only a traceback.

Run: N=1000 python tests/bench/bench_scale.py   (make bench-scale N=1000)
Env: N (default 100), IDLE (seconds at rest, default 60), PHASE_TIMEOUT (seconds per phase),
SETTLE (seconds between the last Healthy and the rest, default N/50, at least 5),
REPLICAS=r (r operators, sharded: SHARDS=2r
by default; the figures are then summed over them, and each one's RSS, cached Rollouts and
server groups are printed too), PROFILE=path (run the operator under py-spy and write a speedscope profile there),
MEMORY_PROFILE=path (run it under tracemalloc and write where its memory is there; with
MEMORY_TRACE=0 only the allocators' accounts, at full speed), APISERVER_PROFILE=path (a CPU
profile of kube-apiserver over the first APISERVER_SECONDS, default 30, of the patch phase, from
its /debug/pprof: read it with `go tool pprof -top path`), APISERVER_TRACE=path (an execution
trace of kube-apiserver, APISERVER_TRACE_SECONDS from APISERVER_TRACE_AFTER seconds into the
patch phase, default 5 and 5: read it with `go tool trace -pprof=sched path`), WORKERS=n (the operator's
--workers; not with PROFILE or MEMORY_PROFILE), PATCH_RATE=r (send phase 2's patches at r a
second, not all at once: pace A/B runs alike), PATCH=0 (skip
phase 2: the "idle" run at N=10,000, where only the cost of carrying N settled rollouts is asked),
ROUTER=nginx (routed canaries: each rollout's stable and canary Services and its Ingress are
created before the first phase's clock starts).

Memory per rollout: the operator's RSS settled at the end minus its RSS before the first create
(caches filled, nothing to hold), over N. Each rollout costs its Rollout, its server groups and
AnalysisRuns in the caches (slimmed: no managedFields; kept as compact JSON text), its place in
the workqueue (a key, and a timer when a step waits) and its metric series; pods are never
cached.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import watch
from kubernetes.client import AppsV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from harness import cluster as cluster_mod
from harness.cluster import token_kubeconfig
from harness.local_http import free_port
from harness.operator import OperatorProcess
from harness.rollouts import rollout, service
from harness.routers import ingress
from herdsman.cluster.kube import PODS, ROLLOUTS, SERVICES
from herdsman.cluster.kube import Path as KPath
from herdsman.sharding import LABEL_LEASE_ROLE
from herdsman.traffic.nginx import INGRESSES

N = int(os.environ.get("N", "100"))
IDLE = float(os.environ.get("IDLE", "60"))
PROFILE = os.environ.get("PROFILE", "")
TIMEOUT = float(os.environ.get("PHASE_TIMEOUT", str(max(300.0, N * 0.6))))
SETTLE = float(os.environ.get("SETTLE", str(max(5.0, N / 50))))
PATCH = os.environ.get("PATCH", "1") != "0"
# Patches per second in phase 2; 0 (the default) sends them as fast as 16 threads can. How fast
# they go moves the figures (the API server is saturated either way): pace A/B runs alike.
PATCH_RATE = float(os.environ.get("PATCH_RATE", "0"))
MEMORY_PROFILE = os.environ.get("MEMORY_PROFILE", "")
WORKERS = os.environ.get("WORKERS", "")  # the operator's --workers (its default when unset)
APISERVER_PROFILE = os.environ.get("APISERVER_PROFILE", "")
APISERVER_SECONDS = int(os.environ.get("APISERVER_SECONDS", "30"))
APISERVER_TRACE = os.environ.get("APISERVER_TRACE", "")
TRACE_SECONDS = int(os.environ.get("APISERVER_TRACE_SECONDS", "5"))
TRACE_AFTER = float(os.environ.get("APISERVER_TRACE_AFTER", "5"))
# Sharded: REPLICAS operators, each acting on (and watching) its share of SHARDS shards.
REPLICAS = int(os.environ.get("REPLICAS", "1"))
SHARDS = int(os.environ.get("SHARDS", str(2 * REPLICAS if REPLICAS > 1 else 0)))
# ROUTER=nginx: the weight goes through an NGINX Ingress per rollout (with its stable and canary
# Services, created before the clock starts) instead of the replica ratio. Ingress is built in,
# so no router CRD is needed; the operator reads the Ingresses and Services on its passes.
ROUTER = os.environ.get("ROUTER", "")
if ROUTER not in ("", "nginx"):
    raise SystemExit(f"ROUTER={ROUTER}: only nginx (or unset: the replica ratio)")
IMAGE_V2 = "registry.k8s.io/pause:3.10"

NAMESPACES = KPath("", "v1", "namespaces", namespaced=False)
SERVICE_ACCOUNTS = KPath("", "v1", "serviceaccounts")
BINDINGS = KPath("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)
FLOW_SCHEMAS = KPath("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", namespaced=False)
DISPATCHED = re.compile(
    r'^apiserver_flowcontrol_dispatched_requests_total\{[^}]*flow_schema="(?P<fs>[^"]+)"[^}]*\}'
    r" (?P<n>\S+)$",
    re.M,
)
TOTAL = re.compile(r"^apiserver_request_total\{[^}]*\} (?P<n>\S+)$", re.M)
BACKGROUND = float(os.environ.get("BACKGROUND", "20"))
NODES = KPath("", "v1", "nodes", namespaced=False)
LEASES = KPath("coordination.k8s.io", "v1", "leases")
PODS_PER_ROLLOUT = 4  # stable 2 + canary 1 at setWeight 50, + 1 while the canary grows to 2
PODS_PER_NODE = 2000
TICKS = os.sysconf("SC_CLK_TCK")


WATCH_SECONDS = 60
# The bench's own watches that the API server ended well before WATCH_SECONDS, by resource: it
# cuts a watcher it cannot deliver to fast enough, and a slow watcher holds up the others first.
CUT: dict[str, int] = {}


def watch_events(stop: threading.Event, what: str, fn: Any, *args: Any) -> Any:
    """Every event of a list-watch until `stop`: the objects there are (as ADDED), then their
    changes, resumed from the last resourceVersion seen when the server ends the watch, and
    shown whole again only when that version has expired (410).

    The bench's watches share the process (and its GIL) with the threads that send the
    patches, so they must be cheap or they measure themselves: events are only JSON-decoded,
    not turned into the client's model objects, and a watch is not restarted from scratch
    every WATCH_SECONDS, which made the API server send every object again each minute."""
    w = watch.Watch()
    version = ""
    while not stop.is_set():
        began = time.monotonic()
        resume = {"resource_version": version} if version else {}
        try:
            for ev in w.stream(
                fn,
                *args,
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=WATCH_SECONDS + 30,
                allow_watch_bookmarks=True,
                deserialize=False,
                **resume,
            ):
                obj = ev.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    yield {"type": ev["type"], "raw_object": obj}
        except ApiException as err:
            if err.status == 410:
                version = ""  # compacted away: shown whole again
        except Exception:
            if stop.is_set():
                return
            time.sleep(0.2)
        if time.monotonic() - began < WATCH_SECONDS - 10 and not stop.is_set():
            CUT[what] = CUT.get(what, 0) + 1


TEMPLATE_V2 = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": IMAGE_V2}]}}}}


def patch_all(
    pool: ThreadPoolExecutor, cluster: cluster_mod.Cluster, url: Any, names: list[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Change every template to IMAGE_V2 at once; returns when each patch was sent, and when
    the API server answered it (under load the answer is what the patch itself waited)."""
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}

    def send(name: str) -> None:
        sent[name] = time.perf_counter()
        cluster.rest.patch(url(name), TEMPLATE_V2)
        answered[name] = time.perf_counter()

    if not PATCH_RATE:
        list(pool.map(send, names))
        return sent, answered
    start = time.perf_counter()
    futures = []
    for i, name in enumerate(names):
        # Each patch at its own time from the start, so a late one does not shift the rest.
        time.sleep(max(0.0, start + i / PATCH_RATE - time.perf_counter()))
        futures.append(pool.submit(send, name))
    for future in futures:
        future.result()
    return sent, answered


def latencies(what: str, ms: list[float]) -> str:
    ms = sorted(ms)
    return (
        f"{what}: p50 {statistics.median(ms):.0f} ms, p95 {percentile(ms, 0.95):.0f} ms,"
        f" p99 {percentile(ms, 0.99):.0f} ms, max {ms[-1]:.0f} ms"
    )


def spread(what: str, seconds: list[float]) -> str:
    """Per release, from its own patch: whether the last ones are a tail or the whole herd."""
    seconds = sorted(seconds)
    return (
        f"{what}: p50 {statistics.median(seconds):.1f} s,"
        f" p90 {percentile(seconds, 0.9):.1f} s, p99 {percentile(seconds, 0.99):.1f} s"
    )


class Tracker:
    """Watches Rollouts and ReplicaSets; records when each rollout reached what."""

    def __init__(self, cluster: cluster_mod.Cluster, ns: str) -> None:
        self.cluster, self.ns = cluster, ns
        self.lock = threading.Lock()
        self.healthy: dict[str, str] = {}  # rollout -> stable group while Healthy
        # stable group -> when its rollout first turned Healthy
        self.healthy_at: dict[str, float] = {}
        self.group_seen: dict[str, float] = {}  # group name -> first ADDED
        # (rollout, generation) -> when the bench's own watch first showed it: how late the API
        # server delivers a Rollout's change to a watcher, apart from what any operator does
        self.generation_seen: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()
        self.changed = threading.Condition(self.lock)

    def start(self) -> None:
        threading.Thread(target=self._rollouts, daemon=True).start()
        threading.Thread(target=self._groups, daemon=True).start()

    def _rollouts(self) -> None:
        api = CustomObjectsApi(cluster_mod.api_client(self.cluster))
        for ev in watch_events(
            self.stop,
            "rollouts",
            api.list_namespaced_custom_object,
            "herdsman.dev",
            "v1alpha1",
            self.ns,
            "rollouts",
        ):
            at = time.perf_counter()
            obj = ev["raw_object"]
            status = obj.get("status") or {}
            name = obj["metadata"]["name"]
            with self.changed:
                self.generation_seen.setdefault((name, obj["metadata"].get("generation", 0)), at)
                if status.get("phase") == "Healthy":
                    self.healthy[name] = status.get("stableServerGroup", "")
                    self.healthy_at.setdefault(self.healthy[name], at)
                else:
                    self.healthy.pop(name, None)
                self.changed.notify_all()

    def _groups(self) -> None:
        api = AppsV1Api(cluster_mod.api_client(self.cluster))
        for ev in watch_events(self.stop, "replicasets", api.list_namespaced_replica_set, self.ns):
            at = time.perf_counter()
            name = ev["raw_object"]["metadata"]["name"]
            with self.changed:
                self.group_seen.setdefault(name, at)
                self.changed.notify_all()

    def wait_all_healthy(self, names: list[str], revision: int) -> float:
        """Block until every rollout is Healthy on `revision`; returns perf_counter then."""
        want = {n: f"{n}-v{revision:03d}" for n in names}
        end = time.monotonic() + TIMEOUT
        with self.changed:
            while True:
                missing = sum(1 for n, g in want.items() if self.healthy.get(n) != g)
                if missing == 0:
                    return time.perf_counter()
                if time.monotonic() > end:
                    raise TimeoutError(f"{missing} of {len(names)} rollouts not Healthy")
                self.changed.wait(timeout=1.0)


class Sampler:
    """The operator process's RSS, sampled, and its CPU seconds, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.rss())
            except OSError:
                return
            time.sleep(0.25)


class Samplers:
    """Several operators' Samplers as one: CPU and RSS summed (peaks summed too: an upper
    bound, as the replicas need not peak together)."""

    def __init__(self, each: list[Sampler]) -> None:
        self.each = each
        self.pid = each[0].pid

    @property
    def peak(self) -> int:
        return sum(s.peak for s in self.each)

    def rss(self) -> int:
        return sum(s.rss() for s in self.each)

    def cpu(self) -> float:
        return sum(s.cpu() for s in self.each)

    def halt(self) -> None:
        for s in self.each:
            s.stop.set()


class ControlPlane:
    """CPU seconds of the local control plane's processes (this worktree's cluster only): where
    the time goes when the operator is not the busy one."""

    NAMES = (
        "kube-apiserver",
        "etcd",
        "kube-controller",
        "kube-scheduler",
        "kwok",
        "kwok-controller",
    )

    def __init__(self, root: Path) -> None:
        self.pids: dict[str, list[int]] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                comm = (proc / "comm").read_text().strip()
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if comm in self.NAMES and str(root) in cmdline:
                self.pids.setdefault(comm, []).append(int(proc.name))

    def cpu(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pids in self.pids.items():
            total = 0.0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                total += (int(fields[11]) + int(fields[12])) / TICKS
            out[name] = total
        return out

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> str:
        return ", ".join(f"{n} {after[n] - before.get(n, 0.0):.1f}" for n in sorted(after))


class OwnMetrics:
    """What the operator counts itself (its /metrics): the API calls it sent, by verb — the one
    idle figure no other client's requests can inflate — and its reconcile passes."""

    SAMPLE = re.compile(r"^(?P<name>herdsman_\w+?)(?:\{(?P<labels>[^}]*)\})? (?P<v>\S+)$", re.M)

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def read(self) -> dict[str, float]:
        # At 10,000 rollouts a scrape is about 22 MB of text and takes seconds on a busy operator.
        with urllib.request.urlopen(self.url, timeout=120) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for m in self.SAMPLE.finditer(text):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"] or ""))
            if (
                m["name"].startswith("herdsman_workqueue_wait_seconds")
                and labels.get("queue") == "rollouts"
            ):
                kind = m["name"].rsplit("_", 1)[1]
                out[f"wait {labels['wake']} {kind} {labels.get('le', '')}"] = float(m["v"])
            if m["name"] == "herdsman_watch_ends_total":
                key = f"ends {labels.get('reason')} {labels.get('resource')}"
                out[key] = out.get(key, 0.0) + float(m["v"])
            if m["name"] in (
                "herdsman_api_requests_total",
                "herdsman_api_throttled_seconds_total",
                "herdsman_echoes_skipped_total",
                "herdsman_events_dropped_total",
                "herdsman_events_queued",
                "herdsman_reconcile_duration_seconds_count",
                "herdsman_reconcile_duration_seconds_sum",
                "herdsman_rollouts_cached",
                "herdsman_server_groups_cached",
            ):
                out[m["name"]] = out.get(m["name"], 0.0) + float(m["v"])
                if m["name"] == "herdsman_api_requests_total" and "verb" in labels:
                    key = f"call {labels['verb']} {labels.get('resource', '?')}"
                    out[key] = out.get(key, 0.0) + float(m["v"])
                if "result" in labels and m["name"].endswith("_count"):
                    key = f"passes {labels['result']}"
                    out[key] = out.get(key, 0.0) + float(m["v"])
        return out

    @staticmethod
    def waits(before: dict[str, float], after: dict[str, float]) -> str:
        """How long wake-ups waited for a worker, by what woke them: the operator's own queue's
        share of a release's latency (the rest is the API server's and the watches')."""
        parts = []
        for wake in ("spec", "status"):
            count = after.get(f"wait {wake} count ", 0.0) - before.get(f"wait {wake} count ", 0.0)
            if not count:
                continue
            total = after.get(f"wait {wake} sum ", 0.0) - before.get(f"wait {wake} sum ", 0.0)
            bounds = sorted(
                (float(k.rsplit(" ", 1)[1]), v - before.get(k, 0.0))
                for k, v in after.items()
                if k.startswith(f"wait {wake} bucket ")
            )
            p99 = next((le for le, n in bounds if n >= 0.99 * count), float("inf"))
            parts.append(
                f"{wake} {count:.0f} waits, mean {total / count * 1000:.0f} ms, p99 <= {p99 * 1000:.0f} ms"
            )
        return "; ".join(parts) or "none"

    @staticmethod
    def passes(before: dict[str, float], after: dict[str, float]) -> str:
        def d(key: str) -> float:
            return after.get(key, 0.0) - before.get(key, 0.0)

        n = d("herdsman_reconcile_duration_seconds_count")
        mean = d("herdsman_reconcile_duration_seconds_sum") / n * 1000 if n else 0.0
        calls = d("herdsman_api_requests_total")
        kinds = ", ".join(
            f"{d(k):.0f} {k.split()[1]}" for k in sorted(after) if k.startswith("passes ") and d(k)
        )
        # Passes not run: the watch brought back a write whose pass left nothing to do.
        kinds += f"; {d('herdsman_echoes_skipped_total'):.0f} echoes skipped"
        throttled = d("herdsman_api_throttled_seconds_total")
        # The calls by verb and resource, most first: where a release's writes go.
        by_kind = sorted(
            ((d(k), k[5:]) for k in after if k.startswith("call ") and d(k)), reverse=True
        )
        breakdown = ", ".join(f"{count:.0f} {kind}" for count, kind in by_kind)
        dropped = d("herdsman_events_dropped_total")
        return (
            f"{n:.0f} passes ({kinds}; mean {mean:.0f} ms), {calls:.0f} API calls"
            f" ({throttled:.1f} s waited for the rate limit in all): {breakdown};"
            f" {dropped:.0f} Events dropped"
        )


class SummedMetrics(OwnMetrics):
    """Several operators' own metrics, each figure summed over them."""

    def __init__(self, ports: list[int]) -> None:
        self.each = [OwnMetrics(port) for port in ports]

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for metrics in self.each:
            for key, value in metrics.read().items():
                out[key] = out.get(key, 0.0) + value
        return out


def wait_shards_split(cluster: cluster_mod.Cluster, ns: str) -> None:
    """Until every shard's Lease is held and the replicas hold their shares."""
    end = time.monotonic() + 120
    share = -(-SHARDS // REPLICAS)
    while time.monotonic() < end:
        items = cluster.rest.get(LEASES.url(ns)) or {}
        holders = [
            (item.get("spec") or {}).get("holderIdentity")
            for item in items.get("items") or []
            if (item["metadata"].get("labels") or {}).get(LABEL_LEASE_ROLE) == "shard"
        ]
        counts = [holders.count(f"bench-{i}") for i in range(REPLICAS)]
        if len(holders) == SHARDS and all(holders) and max(counts) <= share:
            return
        time.sleep(1.0)
    raise RuntimeError("the shards never split between the replicas")


def operator_pid(proc: OperatorProcess) -> int:
    """The Python process itself (under py-spy it is the profiler's child)."""
    assert proc.proc is not None
    pid = proc.proc.pid
    if not PROFILE:
        return pid
    for _ in range(100):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("py-spy started no operator")


def dispatched(cluster: cluster_mod.Cluster, flow: str) -> float:
    text = cluster.kubectl("get", "--raw", "/metrics")
    return sum(float(m["n"]) for m in DISPATCHED.finditer(text) if m["fs"] == flow)


TERMINATED = re.compile(
    r'^apiserver_terminated_watchers_total\{[^}]*resource="(?P<r>[^"]+)"[^}]*\} (?P<n>\S+)$', re.M
)


def terminated_watchers(cluster: cluster_mod.Cluster) -> dict[str, float]:
    """Watchers the API server cut as unresponsive, by resource (every client's)."""
    text = cluster.kubectl("get", "--raw", "/metrics")
    out: dict[str, float] = {}
    for m in TERMINATED.finditer(text):
        out[m["r"]] = out.get(m["r"], 0.0) + float(m["n"])
    return out


def watch_cuts(
    before: dict[str, float],
    after: dict[str, float],
    ops0: dict[str, float],
    ops1: dict[str, float],
) -> str:
    """Who lost watches in a phase: the API server's count (every client), the operators' own
    (their sharded views) and the bench's."""

    def diff(a: dict[str, float], b: dict[str, float], prefix: str = "") -> str:
        keys = sorted(k for k in b if k.startswith(prefix) and b[k] - a.get(k, 0.0))
        return ", ".join(f"{k[len(prefix) :]} {b[k] - a.get(k, 0.0):.0f}" for k in keys) or "none"

    return (
        f"cut by the API server {diff(before, after)}; the operators' ended early"
        f" {diff(ops0, ops1, 'ends early ')}, expired {diff(ops0, ops1, 'ends expired ')};"
        f" the bench's cut so far {', '.join(f'{k} {v}' for k, v in sorted(CUT.items())) or 'none'}"
    )


def requests_total(cluster: cluster_mod.Cluster) -> float:
    text = cluster.kubectl("get", "--raw", "/metrics")
    return sum(float(m["n"]) for m in TOTAL.finditer(text))


def operator_identity(cluster: cluster_mod.Cluster, ns: str, tmp: Path) -> tuple[Path, str]:
    """A ServiceAccount (cluster-admin) for the operator, its own flow schema, and a kubeconfig."""
    rest = cluster.rest
    account = "herdsman-bench"
    flow = f"herdsman-bench-{ns}"
    rest.create(
        SERVICE_ACCOUNTS.url(ns),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
    )
    rest.create(
        BINDINGS.url(),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": flow},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
        },
    )
    rest.create(
        FLOW_SCHEMAS.url(),
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": flow},
            "spec": {
                "matchingPrecedence": 500,
                # workload-high: the operator is not throttled by the benchmark's bookkeeping
                "priorityLevelConfiguration": {"name": "workload-high"},
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {"name": account, "namespace": ns},
                            }
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "clusterScope": True,
                                "namespaces": ["*"],
                            }
                        ],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        },
    )
    token = cluster.kubectl("create", "token", account, "-n", ns, "--duration=2h").strip()
    return token_kubeconfig(cluster, token, tmp / "operator.kubeconfig"), flow


def bench_rollout(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    if not ROUTER:
        return rollout(name, replicas=2, steps=steps, services=False)
    routing = {"nginx": {"stableIngress": name}}
    return rollout(name, replicas=2, steps=steps, trafficRouting=routing)


def user_objects(cluster: cluster_mod.Cluster, ns: str, name: str) -> None:
    """What a user applies beside a routed Rollout: its two Services and its Ingress. The
    Services are headless: the local control plane's Service IP range holds a few hundred."""
    for svc in (name, f"{name}-canary"):
        body = service(svc, name)
        body["spec"]["clusterIP"] = "None"
        cluster.rest.create(SERVICES.url(ns), body)
    cluster.rest.create(INGRESSES.url(ns), ingress(name, name))


def add_pod_room(cluster: cluster_mod.Cluster, pods: int) -> list[str]:
    """KWOK nodes (kwok manages every Node annotated kwok.x-k8s.io/node=fake) with room for
    `pods` pods; the API server accepts a Node's status on create. Returns their names."""
    names = []
    for i in range(-(-pods // PODS_PER_NODE)):
        name = f"bench-{i}"
        names.append(name)
        capacity = {"cpu": "1000", "memory": "4000Gi", "pods": str(PODS_PER_NODE)}
        if cluster.rest.get(NODES.url(None, name)) is None:
            cluster.rest.create(
                NODES.url(),
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                        "labels": {"type": "kwok", "kubernetes.io/hostname": name},
                    },
                    "status": {"allocatable": capacity, "capacity": capacity},
                },
            )
    cluster.kubectl("wait", "--for=condition=Ready", "node", *names, "--timeout=60s")
    return names


def profile_apiserver(cluster: cluster_mod.Cluster) -> list[threading.Thread]:
    """With APISERVER_PROFILE set, a CPU profile of kube-apiserver (its /debug/pprof, on by
    default) over the patch phase's first APISERVER_SECONDS: where the API server's share of
    the 2 cores goes. With APISERVER_TRACE set, an execution trace of APISERVER_TRACE_SECONDS
    from APISERVER_TRACE_AFTER seconds in: `go tool trace -pprof=sched` reads from it where
    goroutines waited for a core (the watch pipeline's among them)."""
    wanted = [
        (APISERVER_PROFILE, f"profile?seconds={APISERVER_SECONDS}", APISERVER_SECONDS, 0.0),
        (APISERVER_TRACE, f"trace?seconds={TRACE_SECONDS}", TRACE_SECONDS, TRACE_AFTER),
    ]

    def run(path: str, what: str, seconds: float, after: float) -> None:
        time.sleep(after)
        result = subprocess.run(
            [
                str(cluster.bin_dir / "kubectl"),
                "--kubeconfig",
                str(cluster.kubeconfig),
                "get",
                "--raw",
                f"/debug/pprof/{what}",
                f"--request-timeout={seconds + 60:.0f}s",
            ],
            capture_output=True,
            timeout=seconds + 90,
        )
        if result.returncode == 0:
            Path(path).write_bytes(result.stdout)
        else:
            print(f"kube-apiserver {what} failed: {result.stderr.decode()[-500:]}", file=sys.stderr)

    threads = [threading.Thread(target=run, args=args, daemon=True) for args in wanted if args[0]]
    for thread in threads:
        thread.start()
    return threads


def pods_by_phase(cluster: cluster_mod.Cluster, ns: str) -> str:
    phases: dict[str, int] = {}
    for pod in cluster.rest.list(PODS.url(ns), timeout=60.0):
        phase = (pod.get("status") or {}).get("phase", "?")
        phases[phase] = phases.get(phase, 0) + 1
    return ", ".join(f"{n} {p}" for p, n in sorted(phases.items())) or "none"


def timed_out(
    err: TimeoutError, cluster: cluster_mod.Cluster, ns: str, plane: ControlPlane, since: Any
) -> list[str]:
    """What a phase that timed out leaves to say: how far it got, and why the rest did not."""
    return [
        f"TIMED OUT after {TIMEOUT:.0f} s: {err}",
        f"pods in the namespace: {pods_by_phase(cluster, ns)}",
        f"control plane CPU s so far: {plane.spent(since, plane.cpu())}",
    ]


def log_summary(text: str) -> str:
    """The operator's warnings and errors, counted by kind (numbers and names stripped)."""
    kinds: dict[str, int] = {}
    for line in text.splitlines():
        if " WARNING " in line or " ERROR " in line:
            key = re.sub(r"\b[\w-]+/r\d+\b|\d+(\.\d+)?", "#", line.split(" ", 1)[-1])[:120]
            kinds[key] = kinds.get(key, 0) + 1
    top = sorted(kinds.items(), key=lambda kv: -kv[1])[:8]
    return "\n".join(f"    {n:6d}  {k}" for k, n in top) or "    (none)"


def percentile(ms: list[float], q: float) -> float:
    return ms[min(len(ms) - 1, max(0, round(q * (len(ms) - 1))))]


def main() -> int:
    cluster = cluster_mod.start()
    ns = f"scale-{secrets.token_hex(3)}"
    tmp = Path(f"/tmp/herdsman-bench-{ns}")
    tmp.mkdir(parents=True, exist_ok=True)
    cluster.rest.create(
        NAMESPACES.url(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    kubeconfig, flow = operator_identity(cluster, ns, tmp)
    # Without the patch phase a rollout never has more than its 2 pods (3 leaves room to spare).
    nodes = add_pod_room(cluster, N * (PODS_PER_ROLLOUT if PATCH else 3))
    time.sleep(3.0)
    g0 = requests_total(cluster)
    time.sleep(BACKGROUND)
    background = (requests_total(cluster) - g0) / BACKGROUND
    command = None
    port = free_port()
    if PROFILE:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        command = [
            spy, "record", "--format", "speedscope", "-o", PROFILE, "--rate", "20", "--nonblocking", "--",
            sys.executable, "-m", "herdsman", "run", "--standalone", "--namespace", ns,
            "--metrics-port", str(port),
        ]  # fmt: skip
    if MEMORY_PROFILE:
        command = [
            sys.executable, str(Path(__file__).with_name("memory_profile.py")),
            "run", "--standalone", "--namespace", ns, "--metrics-port", str(port),
        ]  # fmt: skip
    if REPLICAS > 1 and (PROFILE or MEMORY_PROFILE):
        raise SystemExit("PROFILE and MEMORY_PROFILE take one operator (REPLICAS=1)")
    ports = [port] + [free_port() for _ in range(REPLICAS - 1)]
    ops: list[OperatorProcess] = []
    for i, each_port in enumerate(ports):
        sharded = (
            ["--shards", str(SHARDS), "--lease-namespace", ns, "--identity", f"bench-{i}"]
            if REPLICAS > 1
            else []
        )
        ops.append(
            OperatorProcess(
                cluster=cluster,
                namespaces=[ns],
                log_path=tmp / f"operator{'' if i == 0 else i}.log",
                env={"KUBECONFIG": str(kubeconfig), "MEMORY_PROFILE": MEMORY_PROFILE},
                command=command,
                extra_args=[
                    "--metrics-port", str(each_port), *sharded,
                    *(["--workers", WORKERS] if WORKERS else []),
                ],
            ).start()
        )  # fmt: skip
    if REPLICAS > 1:
        wait_shards_split(cluster, ns)
    own = SummedMetrics(ports)
    sampler = Samplers([Sampler(operator_pid(o)) for o in ops])
    plane = ControlPlane(Path(__file__).resolve().parents[2] / ".cluster")
    tracker = Tracker(cluster, ns)
    tracker.start()
    names = [f"r{i:05d}" for i in range(N)]
    steps = [{"setWeight": 50}, {"pause": {"duration": "5s"}}]
    pool = ThreadPoolExecutor(max_workers=16)
    out: list[str] = []
    failed = False
    try:
        time.sleep(1.0)
        rss0 = sampler.rss()
        cpu0 = sampler.cpu()
        cp0 = plane.cpu()
        m0 = own.read()
        q0 = dispatched(cluster, flow)
        w0 = terminated_watchers(cluster)
        if ROUTER:
            list(pool.map(lambda n: user_objects(cluster, ns, n), names))
        t0 = time.perf_counter()
        list(
            pool.map(
                lambda n: cluster.rest.create(ROLLOUTS.url(ns), bench_rollout(n, steps)),
                names,
            )
        )
        t1 = tracker.wait_all_healthy(names, 1)
        cpu1 = sampler.cpu()
        cp1 = plane.cpu()
        m1 = own.read()
        out.append(f"create -> all Healthy: {t1 - t0:.1f} s")
        w1 = terminated_watchers(cluster)
        time.sleep(2.0)

        cpu2 = cpu3 = sampler.cpu()
        cp2 = cp3 = plane.cpu()
        m2 = m3 = own.read()
        if PATCH:
            cpu2 = sampler.cpu()
            cp2 = plane.cpu()
            m2 = own.read()
            q2 = requests_total(cluster)
            w2 = terminated_watchers(cluster)
            profiling = profile_apiserver(cluster)
            t2 = time.perf_counter()
            sent, answered = patch_all(pool, cluster, lambda n: ROLLOUTS.url(ns, n), names)
            t3 = tracker.wait_all_healthy(names, 2)
            cpu3 = sampler.cpu()
            cp3 = plane.cpu()
            m3 = own.read()
            q3 = requests_total(cluster)
            w3 = terminated_watchers(cluster)
            for thread in profiling:
                thread.join()
            with tracker.lock:
                seen = [(tracker.group_seen[f"{n}-v002"] - sent[n]) * 1000 for n in names]
                after = [(tracker.group_seen[f"{n}-v002"] - answered[n]) * 1000 for n in names]
                done = [tracker.healthy_at[f"{n}-v002"] - sent[n] for n in names]
                delivered = [
                    (tracker.generation_seen[(n, 2)] - sent[n]) * 1000
                    for n in names
                    if (n, 2) in tracker.generation_seen
                ]
            out.append(latencies("patch -> new server group seen", seen))
            if delivered:
                out.append(latencies("  patch -> its Rollout event seen by the bench", delivered))
            out.append(latencies("  from the patch's answer", after))
            out.append(
                f"patch -> all Healthy: {t3 - t2:.1f} s (patches sent in"
                f" {max(sent.values()) - t2:.1f} s, {N / (max(sent.values()) - t2):.0f} a second"
                f"{f', paced at {PATCH_RATE:g}' if PATCH_RATE else ''})"
            )
            out.append(f"watches, create: {watch_cuts(w0, w1, m0, m1)}")
            out.append(f"watches, patch: {watch_cuts(w2, w3, m2, m3)}")
            out.append(spread("patch -> Healthy, per release", done))
            # Every client's requests (the ReplicaSet controller's, the scheduler's, KWOK's, the
            # bench's watches): comparable with bench_floor's figure for Deployments.
            out.append(
                f"API requests (all clients), patch: {q3 - q2:.0f} ({(q3 - q2) / N:.1f} per release)"
            )

        # Let the last passes finish, and the control plane finish deleting old pods, before the
        # rest starts: its request rate is read from the API server, which counts every client.
        time.sleep(SETTLE)
        # Events go out apart from the passes, after them when the API server is busy: the
        # rest starts once the backlog has drained, or it would count as the idle rate.
        backlog = own.read().get("herdsman_events_queued", 0.0)
        drained_by = time.monotonic() + TIMEOUT
        while backlog and time.monotonic() < drained_by:
            time.sleep(2.0)
            backlog = own.read().get("herdsman_events_queued", 0.0)
        if backlog:
            out.append(f"Events still queued when the rest began: {backlog:.0f}")
        cpu4 = sampler.cpu()
        m4 = own.read()
        r0 = dispatched(cluster, flow)
        if r0 > q0:
            out.append(f"API requests by the operator, create + patch: {r0 - q0:.0f}")
        g0 = requests_total(cluster)
        time.sleep(IDLE)
        r1 = dispatched(cluster, flow)
        g1 = requests_total(cluster)
        cpu5 = sampler.cpu()
        m5 = own.read()
        settled = sampler.rss()
        if MEMORY_PROFILE:
            os.kill(sampler.pid, signal.SIGUSR2)
            time.sleep(min(120.0, 5.0 + N / 50))  # the report walks every live allocation
        out.append(
            f"operator RSS: peak {sampler.peak / 2**20:.0f} MB, settled {settled / 2**20:.0f} MB"
            f" (before the first create {rss0 / 2**20:.0f} MB:"
            f" {(settled - rss0) / N / 1024:.1f} KiB per rollout)"
        )
        if REPLICAS > 1:
            out.append(f"{REPLICAS} replicas, {SHARDS} shards; figures summed over them")
            for i, (one, metrics) in enumerate(zip(sampler.each, own.each, strict=True)):
                read = metrics.read()
                cached = read.get("herdsman_rollouts_cached", -1)
                groups = read.get("herdsman_server_groups_cached", -1)
                out.append(
                    f"  replica bench-{i}: RSS peak {one.peak / 2**20:.0f} MB, settled"
                    f" {one.rss() / 2**20:.0f} MB, {cached:.0f} Rollouts and {groups:.0f}"
                    " server groups cached"
                )
        out.append(
            f"operator CPU: create {cpu1 - cpu0:.1f} s, patch {cpu3 - cpu2:.1f} s,"
            f" rest {cpu5 - cpu4:.1f} s over {IDLE:.0f} s"
        )
        out.append(f"control plane CPU s, create: {plane.spent(cp0, cp1)}")
        out.append(f"control plane CPU s, patch: {plane.spent(cp2, cp3)}")
        out.append(f"operator work, create: {own.passes(m0, m1)}")
        out.append(f"operator work, patch: {own.passes(m2, m3)}")
        out.append(f"workqueue wait for a worker, patch: {own.waits(m2, m3)}")
        # At rest the passes are the 5-minute resyncs (served from the cache): what the CPU
        # at rest is spent on, and how many fell in this window.
        out.append(f"operator work, rest: {own.passes(m4, m5)}")
        idle_calls = m5.get("herdsman_api_requests_total", 0.0) - m4.get(
            "herdsman_api_requests_total", 0.0
        )
        out.append(
            f"idle API calls the operator sent (its own count): {idle_calls / IDLE:.2f} per second"
        )
        if r1 > r0:
            out.append(f"idle API requests by the operator: {(r1 - r0) / IDLE:.2f} per second")
        rest = (g1 - g0) / IDLE
        out.append(
            f"idle API requests by the operator: {rest - background:.2f} per second"
            f" ({rest:.2f} in all at rest, {background:.2f} before the operator started)"
        )
    except TimeoutError as err:
        failed = True
        out += timed_out(err, cluster, ns, plane, cp0)
        out.append(f"operator CPU so far: {sampler.cpu() - cpu0:.1f} s")
    finally:
        log = "".join(o.log() for o in ops)
        out.append(
            f"operator log: {log.count('gave up')} 'gave up', {log.count('reconcile failed')}"
            f" 'reconcile failed', {sum(len(o.errors()) for o in ops)} errors"
        )
        out.append("operator warnings by kind:\n" + log_summary(log))
        tracker.stop.set()
        sampler.halt()
        if PROFILE:
            # py-spy writes its profile when the profiled process exits, not when it is killed.
            os.kill(sampler.pid, signal.SIGTERM)
            time.sleep(3.0)
        for o in ops:
            o.stop()
        pool.shutdown()
        cluster.rest.delete(FLOW_SCHEMAS.url(None, flow))
        cluster.rest.delete(BINDINGS.url(None, flow))
        cluster.rest.delete(NAMESPACES.url(None, ns))
        for node in nodes:
            cluster.rest.delete(NODES.url(None, node))
        cluster_mod.stop(cluster)
    weight = "an NGINX Ingress each" if ROUTER else "replica ratio"
    print(f"N={N} rollouts (canary, 2 replicas, setWeight 50 + pause 5s, {weight})")
    for line in out:
        print("  " + line)
    print(
        f"  (operator log: {tmp / 'operator.log'}{' and the others beside it' if REPLICAS > 1 else ''})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
