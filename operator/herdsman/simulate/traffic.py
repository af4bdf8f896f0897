"""A synthetic service for the demo and closed-loop tests: traffic follows the operator's weights.

Every tick the simulator reads how traffic is split *right now* — by default the replica ratio
(available pods per server group, as a Service selecting every group would spread requests),
or the weights the Rollout's status says are in effect (what a traffic router sends), or any
other reader — and sends that tick's requests to the groups in those shares. Each group behaves
as it is told, keyed by the image it runs (healthy, 20% errors, +30% latency...). The results
are exported in Prometheus format per server group:

    herdsman_demo_requests_total{group, code}            counter
    herdsman_demo_request_duration_seconds{group}        histogram (sum/count give the mean)

So after a rollback the canary's traffic really stops, and Prometheus sees it stop.

With a router that routes on headers (`routing`), each request is routed on its own: a share
of them (`tagged_share`) carries `tagged_headers`, the rest none, and the router decides per
request — so "only matching traffic reaches the canary" is counted (`sent_tagged`,
`sent_untagged`), not assumed. Mirrored copies reach their group too (`mirrored`).

With `faults` as well, the route a request takes may carry a fault (Istio's `fault` on an HTTP
route, as a chaos step's httpFault writes it): a share of its requests is delayed, a share
answered with the abort's status instead of the group's own answer. Both are counted against the
group the route sends the request to — what a mesh's metrics keyed by destination report.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from herdsman.cluster.kube import REPLICA_SETS, ROLLOUTS, Rest
from herdsman.naming import LABEL_ROLLOUT, label_value


def error_rate_query(group: str = "{{rollout.canaryGroup}}") -> str:
    """PromQL for the share of `group`'s requests answered 500 over the last 10 s (0 when none
    failed; no result when the group had no traffic, which the analysis treats as no data)."""
    return (
        f'(sum(rate(herdsman_demo_requests_total{{group="{group}",code="500"}}[10s])) or vector(0))'
        f' / sum(rate(herdsman_demo_requests_total{{group="{group}"}}[10s]))'
    )


def mean_latency_query(group: str) -> str:
    """PromQL for `group`'s mean request duration over the last 4 s."""
    return (
        f'sum(rate(herdsman_demo_request_duration_seconds_sum{{group="{group}"}}[4s]))'
        f' / sum(rate(herdsman_demo_request_duration_seconds_count{{group="{group}"}}[4s]))'
    )


BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)


@dataclass(frozen=True)
class Behaviour:
    error_rate: float = 0.0  # share of requests answered 500
    latency: float = 0.1  # mean seconds
    jitter: float = 0.02  # standard deviation
    # A fragile version: how its group answers while it has lost pods (fewer available than
    # the most it has had), e.g. the survivors overloaded or a cache rebuilding. None: resilient.
    degraded: Behaviour | None = None


HEALTHY = Behaviour()


@dataclass(frozen=True)
class Fault:
    """An HTTP fault on a route: `delay` seconds added to `delay_percent`% of its requests,
    `abort_status` answered to `abort_percent`% of them."""

    delay: float = 0.0
    delay_percent: float = 0.0
    abort_status: int = 503
    abort_percent: float = 0.0


# A reader returns {server group: share} for the current instant; shares need not sum to 1.
Reader = Callable[[], dict[str, float]]
# Per-request routing: a request's headers -> ({group: share}, {group: percent mirrored}).
Route = Callable[[dict[str, str]], tuple[dict[str, float], dict[str, float]]]
# Per-request faults: a request's headers -> the fault on the route it takes (None: none).
FaultRoute = Callable[[dict[str, str]], Fault | None]


@dataclass
class GroupInfo:
    image: str
    available: int


def replica_ratio(rest: Rest, namespace: str, rollout: str) -> Callable[[], dict[str, GroupInfo]]:
    """Available pods and image per server group: what a Service over all groups would see."""

    def read() -> dict[str, GroupInfo]:
        out = {}
        for rs in rest.list(
            REPLICA_SETS.url(namespace), labels=f"{LABEL_ROLLOUT}={label_value(rollout)}"
        ):
            image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
            available = int((rs.get("status") or {}).get("availableReplicas", 0) or 0)
            out[rs["metadata"]["name"]] = GroupInfo(image=image, available=available)
        return out

    return read


def rollout_weights(rest: Rest, namespace: str, rollout: str) -> Reader:
    """{server group: percent} from the Rollout's `status.weights`: the split a traffic router
    applies once the operator has written it (roles without a group get nothing)."""

    def read() -> dict[str, float]:
        body = rest.get(ROLLOUTS.url(namespace, rollout)) or {}
        status = body.get("status") or {}
        weights = status.get("weights") or {}
        out: dict[str, float] = {}
        for role in ("stable", "canary", "baseline"):
            group = status.get(f"{role}ServerGroup")
            if group:
                out[group] = out.get(group, 0.0) + float(weights.get(role, 0) or 0)
        return out

    return read


@dataclass
class TrafficSimulator:
    groups: Callable[[], dict[str, GroupInfo]]
    behaviours: dict[str, Behaviour] = field(default_factory=dict)  # image -> behaviour
    requests_per_tick: int = 40
    tick: float = 0.25
    seed: int = 7
    # Optional: weights from a router instead of the replica ratio ({group: percent}).
    weights: Callable[[], dict[str, float]] | None = None
    # Optional: per-request routing, read once per tick (header routes); overrides `weights`.
    routing: Callable[[], Route] | None = None
    # Optional with `routing`: the faults on the routes, read once per tick.
    faults: Callable[[], FaultRoute] | None = None
    tagged_headers: dict[str, str] = field(default_factory=dict)
    tagged_share: float = 0.0
    port: int = 0
    address: str = "127.0.0.1"
    sent: dict[str, int] = field(default_factory=dict)
    sent_tagged: dict[str, int] = field(default_factory=dict)
    sent_untagged: dict[str, int] = field(default_factory=dict)
    mirrored: dict[str, int] = field(default_factory=dict)
    # The most pods each group has had available: fewer now means it lost some (fragile mode).
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _server: WSGIServer | None = None

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "herdsman_demo_requests",
            "Synthetic requests",
            ["group", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "herdsman_demo_request_duration_seconds",
            "Synthetic request latency",
            ["group"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.rng = random.Random(self.seed)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> TrafficSimulator:
        self._server, _ = start_http_server(self.port, addr=self.address, registry=self.registry)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._loop, name="traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def target(self) -> str:
        host = "127.0.0.1" if self.address in ("", "0.0.0.0") else self.address
        return f"{host}:{self.port}"

    # --- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.step()
            except Exception:  # a blip reading the cluster: skip the tick, keep serving
                continue

    def shares(self) -> dict[str, tuple[float, Behaviour]]:
        info = self.groups()
        if self.weights is not None:
            raw = {g: w for g, w in self.weights().items() if g in info}
        else:
            raw = {g: float(i.available) for g, i in info.items()}
        total = sum(raw.values())
        if total <= 0:
            return {}
        return {g: (w / total, self.behaviour(g, info[g])) for g, w in raw.items() if w > 0}

    def behaviour(self, group: str, info: GroupInfo) -> Behaviour:
        """How `group` answers now: its image's behaviour, or the degraded one of a fragile
        image while the group has fewer pods available than it has had."""
        peak = max(self.peaks.get(group, 0), info.available)
        self.peaks[group] = peak
        found = self.behaviours.get(info.image, HEALTHY)
        if found.degraded is not None and info.available < peak:
            return found.degraded
        return found

    def step(self) -> None:
        if self.routing is not None:
            self._routed_step(self.routing)
            return
        shares = self.shares()
        if not shares:
            return
        groups = list(shares)
        probabilities = [shares[g][0] for g in groups]
        for _ in range(self.requests_per_tick):
            group = self.rng.choices(groups, probabilities)[0]
            behaviour = shares[group][1]
            code = "500" if self.rng.random() < behaviour.error_rate else "200"
            latency = max(0.001, self.rng.gauss(behaviour.latency, behaviour.jitter))
            self.requests.labels(group=group, code=code).inc()
            self.duration.labels(group=group).observe(latency)
            self.sent[group] = self.sent.get(group, 0) + 1

    def _routed_step(self, routing: Callable[[], Route]) -> None:
        info = self.groups()
        route = routing()
        faults = self.faults() if self.faults is not None else None
        for _ in range(self.requests_per_tick):
            tagged = self.rng.random() < self.tagged_share
            headers = dict(self.tagged_headers) if tagged else {}
            shares, mirrors = route(headers)
            live = {g: w for g, w in shares.items() if g in info and w > 0}
            if not live:
                continue
            groups = list(live)
            group = self.rng.choices(groups, [live[g] for g in groups])[0]
            fault = faults(headers) if faults is not None else None
            self._serve(group, self.behaviour(group, info[group]), fault=fault)
            counts = self.sent_tagged if tagged else self.sent_untagged
            counts[group] = counts.get(group, 0) + 1
            for target, percent in mirrors.items():
                if target in info and self.rng.random() * 100 < percent:
                    self._serve(target, self.behaviour(target, info[target]), mirrored=True)

    def _serve(
        self,
        group: str,
        behaviour: Behaviour,
        *,
        mirrored: bool = False,
        fault: Fault | None = None,
    ) -> None:
        code = "500" if self.rng.random() < behaviour.error_rate else "200"
        latency = max(0.001, self.rng.gauss(behaviour.latency, behaviour.jitter))
        if fault is not None:
            if self.rng.random() * 100 < fault.delay_percent:
                latency += fault.delay
            if self.rng.random() * 100 < fault.abort_percent:
                code = str(fault.abort_status)
        self.requests.labels(group=group, code=code).inc()
        self.duration.labels(group=group).observe(latency)
        counts = self.mirrored if mirrored else self.sent
        counts[group] = counts.get(group, 0) + 1
