"""Kill the operator at any instant, behind a flaky API server, and every release still lands.

Five kinds of release run side by side in one namespace — a canary by replica ratio, a canary
behind a Gateway API HTTPRoute, blue/green, a canary with an analysis step, a canary with a
baseline — while a killer thread starts the operator and SIGKILLs it after a random 0.3-3.5 s
(not waiting for it to be ready: a kill during start-up is a kill too), again and again. Every
request the operator makes goes through `ApiProxy`, which answers about a third of them with a
fault (5xx, 429, 409, a lost answer, a slow one, a cut watch). `Invariants` polls the namespace
all along. When the kills are done, one operator runs on (faults still on) through rounds of
releases until the proxy has injected HERDSMAN_CHAOS_API_FAULTS faults: every rollout must end
Healthy on its last revision, with nothing left behind, and no invariant may ever have been
broken.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.apiproxy import ApiProxy, FaultRates
from harness.chaosreport import API_FAULTS, FAULT_RATE, KILLS, REPORT
from harness.cluster import Cluster, wait_until
from harness.faultyprom import FaultyPrometheus
from harness.invariants import Invariants, settle
from harness.operator import OperatorProcess
from harness.rollouts import Rollouts, blue_green, rollout
from harness.routers import http_route, install_crds
from herdsman.cluster.kube import ANALYSIS_TEMPLATES, ROLLOUTS
from herdsman.naming import LABEL_GROUP
from herdsman.traffic.gatewayapi import HTTP_ROUTES

pytestmark = [pytest.mark.chaos]

NAMES = ("ratio", "routed", "bg", "analysed", "baseline")


class Spawned(OperatorProcess):
    """An operator process started without waiting for it to be ready."""

    def spawn(self) -> None:
        args = [sys.executable, "-m", "herdsman", "run", "--standalone"]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as log:
            log.write(f"--- spawn #{self.starts + 1} ---\n".encode())
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.starts += 1


class Killer(threading.Thread):
    def __init__(self, operator: Spawned, kills: int, seed: int = 16) -> None:
        super().__init__(name="killer", daemon=True)
        self.operator, self.kills, self.rng = operator, kills, random.Random(seed)
        self.done = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while self.done < self.kills and not self.stopped.is_set():
            self.operator.spawn()
            self.stopped.wait(self.rng.uniform(0.3, 3.5))
            self.operator.kill()
            self.done += 1


def manifests() -> list[dict[str, Any]]:
    ratio = rollout(
        "ratio",
        replicas=4,
        steps=[{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}],
    )
    routed = rollout(
        "routed",
        replicas=3,
        steps=[{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 60}],
        trafficRouting={"gatewayAPI": {"httpRoute": "routed"}},
    )
    bg = blue_green("bg", replicas=3, scaleDownDelaySeconds=2)
    analysed = rollout(
        "analysed",
        replicas=4,
        steps=[
            {"setWeight": 25},
            {"analysis": {"templates": [{"templateName": "analysed"}]}},
            {"setWeight": 75},
        ],
    )
    baseline = rollout(
        "baseline",
        replicas=4,
        baseline=True,
        steps=[{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}],
    )
    return [ratio, routed, bg, analysed, baseline]


def template(address: str) -> dict[str, Any]:
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "analysed"},
        "spec": {
            "metrics": [
                {
                    "name": "error-rate",
                    "interval": "1s",
                    "count": 2,
                    "successCondition": "result[0] < 0.5",
                    "failureCondition": "result[0] >= 0.5",
                    "provider": {"prometheus": {"address": address, "query": "errors"}},
                }
            ]
        },
    }


def release(rollouts: Rollouts, name: str, round_: int) -> None:
    """A new revision: the same image, a new environment variable (a new template)."""
    body = rollouts.get(name)
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "RELEASE", "value": str(round_)}]
    rollouts.rest.patch(
        ROLLOUTS.url(rollouts.ns, name), {"spec": {"template": body["spec"]["template"]}}
    )


def landed(rollouts: Rollouts, name: str, revision: int) -> bool:
    status = rollouts.status(name)
    group = f"{name}-v{revision:03d}"
    return bool(
        status.get("phase") == "Healthy"
        and status.get("stableServerGroup") == group
        and status.get("observedGeneration") == rollouts.get(name)["metadata"]["generation"]
    )


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[ApiProxy]:
    with ApiProxy(cluster.kubeconfig, FaultRates.scaled(FAULT_RATE), seed=16) as running:
        yield running


def test_releases_land_through_kills_and_api_faults_with_every_promise_kept(
    cluster: Cluster,
    namespace: str,
    rollouts: Rollouts,
    proxy: ApiProxy,
    tmp_path: Path,
) -> None:
    install_crds(cluster)
    operator = Spawned(
        cluster=cluster,
        namespaces=[namespace],
        log_path=tmp_path / "operator.log",
        env={"KUBECONFIG": str(proxy.kubeconfig(tmp_path / "proxy.kubeconfig"))},
    )
    check = Invariants(cluster.rest, namespace).start()
    prom = FaultyPrometheus().start()
    killer = Killer(operator, KILLS)
    revision = 1
    try:
        cluster.rest.create(ANALYSIS_TEMPLATES.url(namespace), template(prom.address("good")))
        cluster.rest.create(
            HTTP_ROUTES.url(namespace),
            http_route("routed", stable="routed", canary="routed-canary"),
        )
        for body in manifests():
            rollouts.create(body)
        started = time.monotonic()
        killer.start()
        # Releases keep coming while the killer works: each round waits for the last to land
        # (or for the kills to end), then starts the next on every rollout at once.
        while killer.is_alive():
            wait_until(
                lambda r=revision: (
                    all(landed(rollouts, n, r) for n in NAMES) or not killer.is_alive()
                ),
                timeout=KILLS * 4 + 60,
                interval=1,
                what="a round of releases",
            )
            if not killer.is_alive():
                break
            revision += 1
            for name in NAMES:
                release(rollouts, name, revision)
        kill_seconds = time.monotonic() - started
        # One operator to the end, faults still on.
        ready = operator.log().count("herdsman operator started")
        operator.spawn()
        wait_until(
            lambda: operator.log().count("herdsman operator started") > ready,
            timeout=60,
            what="the last operator to start",
        )

        # Then rounds of releases on one operator, faults still on, until the proxy has
        # injected API_FAULTS: the operator is killed so often above that it makes few
        # requests (a start takes about as long as a life), so most faults land here.
        def every_release_landed() -> None:
            wait_until(
                lambda: all(landed(rollouts, n, revision) for n in NAMES),
                timeout=240,
                interval=1,
                what="every release landed",
                describe=lambda: str({n: rollouts.status(n) for n in NAMES}),
            )

        every_release_landed()
        give_up = time.monotonic() + 900
        while proxy.faults < API_FAULTS and time.monotonic() < give_up:
            revision += 1
            for name in NAMES:
                release(rollouts, name, revision)
            every_release_landed()
        REPORT.rollouts_completed += len(NAMES) * revision
        # Nothing left behind: only the last group has pods, and every Service selects it.
        for name in NAMES:
            group = f"{name}-v{revision:03d}"
            wait_until(
                lambda name=name, group=group: all(
                    size == (0, 0) or n == group for n, size in rollouts.sizes(name).items()
                ),
                timeout=60,
                what=f"{name}: old groups scaled down",
                describe=lambda name=name: str(rollouts.sizes(name)),
            )
            assert rollouts.selector(name)[LABEL_GROUP] == group
        route = cluster.rest.get(HTTP_ROUTES.url(namespace, "routed"))
        assert route is not None
        weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
        assert weights == {"routed": 100, "routed-canary": 0}
        settle(check)
        crashes = [line for line in operator.log().splitlines() if "Traceback" in line]
        assert not crashes, crashes[:5]
        print(
            f"\n{killer.done} kills in {kill_seconds:.0f}s, {revision} rounds of"
            f" {len(NAMES)} releases; proxy: {proxy.requests} requests, {dict(proxy.counts)}"
        )
    finally:
        killer.stopped.set()
        killer.join(timeout=10)
        operator.stop()
        prom.stop()
        violations = check.stop()
        REPORT.kills += killer.done
        REPORT.api_requests += proxy.requests
        REPORT.api_faults.update(proxy.counts)
        for v in violations:
            REPORT.violation(f"survival: {v}")
    assert not violations, violations
    assert killer.done >= KILLS
    assert proxy.faults >= API_FAULTS, f"only {proxy.faults} API faults injected"
