"""Blue/green scenarios on the real control plane, told the way a user would tell them.

The active service is watched for the whole of each scenario, so "the active service never
moved" and "one selector write" are what the API server stored, not what a poll happened to see.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client, watch

from harness.cluster import Cluster, api_client, wait_until
from harness.local_http import LocalHttpServer, Reply, Request
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, IMAGE_V3, Rollouts, blue_green, service
from herdsman.cli import actions
from herdsman.cluster.kube import ANALYSIS_RUNS, ANALYSIS_TEMPLATES, PODS, ROLLOUTS, SERVICES
from herdsman.naming import LABEL_GROUP

pytestmark = pytest.mark.e2e

V1, V2 = "checkout-v001", "checkout-v002"


class SelectorLog:
    """Every selector the API server stored for one Service, in order, from a watch."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.api = client.CoreV1Api(api_client(cluster))
        self.ns, self.name = namespace, name
        self.seen: list[str | None] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SelectorLog:
        body = self.api.read_namespaced_service(self.name, self.ns)
        self.seen.append((body.spec.selector or {}).get(LABEL_GROUP))
        self._rv = body.metadata.resource_version
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(
                    self.api.list_namespaced_service,
                    self.ns,
                    field_selector=f"metadata.name={self.name}",
                    resource_version=self._rv,
                    timeout_seconds=2,
                ):
                    obj = event["object"]
                    self._rv = obj.metadata.resource_version
                    if event["type"] == "MODIFIED":
                        with self._lock:
                            self.seen.append((obj.spec.selector or {}).get(LABEL_GROUP))
                    if self._stop.is_set():
                        break
            except Exception:  # a dropped watch is resumed from the last version seen
                time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def groups(self) -> list[str | None]:
        """The selected group after each write, repeats (writes of other fields) folded."""
        with self._lock:
            out: list[str | None] = []
            for g in self.seen:
                if not out or out[-1] != g:
                    out.append(g)
            return out

    def writes(self) -> int:
        with self._lock:
            return len(self.seen) - 1


@pytest.fixture
def active_log(cluster: Cluster, namespace: str) -> Iterator[Any]:
    made: list[SelectorLog] = []

    def start(name: str = "checkout") -> SelectorLog:
        log = SelectorLog(cluster, namespace, name).start()
        made.append(log)
        return log

    yield start
    for log in made:
        log.stop()


def blue_green_status(rollouts: Rollouts) -> dict[str, Any]:
    return rollouts.status().get("blueGreen") or {}


def scale_down_at(rollouts: Rollouts, group: str) -> datetime | None:
    row = next(r for r in rollouts.status()["serverGroups"] if r["name"] == group)
    at = row.get("scaleDownAt")
    return datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None


def pods_of(rollouts: Rollouts, group: str) -> set[str]:
    items = rollouts.rest.list(PODS.url(rollouts.ns), labels=f"{LABEL_GROUP}={group}")
    return {p["metadata"]["uid"] for p in items if not p["metadata"].get("deletionTimestamp")}


def test_manual_promotion_switches_the_active_service_in_one_write(
    operator: OperatorProcess, rollouts: Rollouts, active_log: Any
) -> None:
    rollouts.create(blue_green(autoPromotionEnabled=False, scaleDownDelaySeconds=600))
    rollouts.wait_healthy(V1)
    log = active_log()
    rollouts.set_image(IMAGE_V2)

    status = rollouts.wait_phase("Paused")
    # A full-size preview, behind the preview service only.
    assert rollouts.sizes() == {V1: (4, 4), V2: (4, 4)}
    assert rollouts.selector("checkout-preview")[LABEL_GROUP] == V2
    assert rollouts.selector("checkout")[LABEL_GROUP] == V1
    assert status["blueGreen"]["activeServerGroup"] == V1
    assert status["blueGreen"]["previewServerGroup"] == V2
    assert status["blueGreen"]["previewReadyAt"]
    assert status["pauseConditions"][0]["reason"] == "BlueGreenPause"
    assert "waiting for promotion" in status["message"]
    roles = {r["name"]: r["role"] for r in status["serverGroups"]}
    assert roles == {V1: "active", V2: "preview"}
    time.sleep(1.5)
    assert rollouts.selector("checkout")[LABEL_GROUP] == V1

    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    status = rollouts.wait_healthy(V2)
    assert status["blueGreen"]["activeServerGroup"] == V2
    assert status["blueGreen"].get("previewServerGroup") is None
    assert log.groups() == [V1, V2]
    assert log.writes() == 1
    # The old group is warm, with its deadline in status.
    assert rollouts.sizes() == {V1: (4, 4), V2: (4, 4)}
    assert scale_down_at(rollouts, V1) is not None
    reasons = operator.logged("checkout", "RolloutCompleted")
    for reason in ("PreviewReady", "Promoted", "ActiveSwitched", "RolloutCompleted"):
        assert reasons.count(reason) == 1, reasons
    assert not operator.errors()


def test_auto_promotion_waits_auto_promotion_seconds(
    operator: OperatorProcess, rollouts: Rollouts, active_log: Any
) -> None:
    rollouts.create(blue_green(autoPromotionSeconds=4))
    rollouts.wait_healthy(V1)
    log = active_log()
    rollouts.set_image(IMAGE_V2)

    status = rollouts.wait_phase("Paused")
    assert "auto-promotion at" in status["message"]
    ready = time.monotonic()
    rollouts.wait_healthy(V2, timeout=30)
    waited = time.monotonic() - ready
    assert 2.5 <= waited <= 15, waited
    assert log.groups() == [V1, V2]
    assert operator.logged("checkout", "AutoPromoted").count("AutoPromoted") == 1


def test_the_old_group_scales_down_after_the_delay(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(blue_green(scaleDownDelaySeconds=5))
    rollouts.wait_healthy(V1)
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_healthy(V2)
    deadline = scale_down_at(rollouts, V1)
    assert deadline is not None

    time.sleep(2)
    assert rollouts.sizes()[V1] == (4, 4)
    rollouts.wait(lambda _: rollouts.sizes()[V1] == (0, 0), timeout=30, what="v1 scaled down")
    assert time.time() >= deadline.timestamp() - 0.5
    assert scale_down_at(rollouts, V1) is None
    assert operator.logged("checkout", "ScaledDown").count("ScaledDown") == 1
    assert rollouts.selector("checkout")[LABEL_GROUP] == V2


def test_undo_within_the_scale_down_window_is_one_selector_write_and_no_new_pod(
    operator: OperatorProcess, rollouts: Rollouts, active_log: Any
) -> None:
    rollouts.create(blue_green(scaleDownDelaySeconds=600))
    rollouts.wait_healthy(V1)
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_healthy(V2)
    warm = pods_of(rollouts, V1)
    assert len(warm) == 4
    log = active_log()

    started = time.monotonic()
    assert actions.undo(rollouts.rest, rollouts.ns, "checkout") == 1
    wait_until(
        lambda: rollouts.selector("checkout")[LABEL_GROUP] == V1,
        timeout=10,
        interval=0.05,
        what="active back on v1",
    )
    took = time.monotonic() - started
    status = rollouts.wait_healthy(V1)
    assert took < 5, took
    assert log.writes() == 1
    assert log.groups() == [V2, V1]
    # The very pods that were kept warm serve again: none created, no group created.
    assert pods_of(rollouts, V1) == warm
    assert set(rollouts.groups()) == {V1, V2}
    assert status["currentRevision"] == 1
    assert "FastRollback" in operator.logged("checkout", "FastRollback")
    assert scale_down_at(rollouts, V2) is not None


def test_abort_keeps_the_active_service_and_retry_starts_the_preview_again(
    operator: OperatorProcess, rollouts: Rollouts, active_log: Any
) -> None:
    rollouts.create(blue_green(autoPromotionEnabled=False, abortScaleDownDelaySeconds=2))
    rollouts.wait_healthy(V1)
    log = active_log()
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused")

    actions.abort(rollouts.rest, rollouts.ns, "checkout")
    status = rollouts.wait_phase("Degraded")
    assert status["message"] == "aborted by user"
    rollouts.wait(lambda _: rollouts.sizes()[V2] == (0, 0), what="preview scaled down")
    assert rollouts.selector("checkout-preview")[LABEL_GROUP] == V1

    actions.retry(rollouts.rest, rollouts.ns, "checkout")
    status = rollouts.wait_phase("Paused")
    assert status["attempt"] == 1
    assert rollouts.sizes()[V2] == (4, 4)
    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_healthy(V2)
    assert log.groups() == [V1, V2]


def test_the_operator_killed_mid_way_finishes_after_restart(
    operator: OperatorProcess, rollouts: Rollouts, active_log: Any
) -> None:
    rollouts.create(blue_green(autoPromotionEnabled=False, scaleDownDelaySeconds=3))
    rollouts.wait_healthy(V1)
    log = active_log()
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused")
    operator.kill()

    # Promoted while no operator runs: nothing moves until one is back.
    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    time.sleep(1.5)
    assert rollouts.selector("checkout")[LABEL_GROUP] == V1

    operator.start()
    rollouts.wait_healthy(V2)
    # The promotion's lines follow the status write that made it Healthy by a few milliseconds;
    # a kill in between would lose them for good, and this test counts them.
    operator.wait_for("RolloutCompleted", rollout="checkout")
    operator.kill()
    # The old group's deadline passes while the operator is down; the next one honours it.
    time.sleep(3.5)
    assert rollouts.sizes()[V1] == (4, 4)
    operator.start()
    rollouts.wait(lambda _: rollouts.sizes()[V1] == (0, 0), what="v1 scaled down after restart")

    assert set(rollouts.groups()) == {V1, V2}
    assert log.groups() == [V1, V2]
    reasons = operator.logged("checkout", "ScaledDown")
    for reason in ("PreviewReady", "Promoted", "ActiveSwitched", "RolloutCompleted", "ScaledDown"):
        assert reasons.count(reason) == 1, reasons


def test_changing_strategy_mid_release_is_refused_and_allowed_at_rest(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    from harness.rollouts import rollout as canary_rollout

    rollouts.create(canary_rollout(replicas=4, steps=[{"setWeight": 50}, {"pause": {}}]))
    rollouts.wait_healthy(V1)
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    sizes = rollouts.settled_sizes()

    rollouts.rest.create(SERVICES.url(rollouts.ns), service("checkout-preview", "checkout"))
    bg = {"blueGreen": {"activeService": "checkout", "previewService": "checkout-preview"}}
    rollouts.rest.patch(
        ROLLOUTS.url(rollouts.ns, "checkout"), {"spec": {"strategy": {"canary": None, **bg}}}
    )
    status = rollouts.wait(lambda s: "spec.strategy" in s.get("message", ""), what="refusal")
    assert "cannot change from canary to blueGreen" in status["message"]
    assert status["phase"] == "Degraded"
    time.sleep(1)
    assert rollouts.sizes() == sizes

    # Back to the canary, finish it; then the change is taken for the next revision.
    rollouts.rest.patch(
        ROLLOUTS.url(rollouts.ns, "checkout"),
        {
            "spec": {
                "strategy": {
                    "blueGreen": None,
                    "canary": {
                        "stableService": "checkout",
                        "canaryService": "checkout-canary",
                        "steps": [{"setWeight": 50}, {"pause": {}}],
                    },
                }
            }
        },
    )
    rollouts.wait_phase("Paused", step="2/2")
    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_healthy(V2)
    rollouts.rest.patch(
        ROLLOUTS.url(rollouts.ns, "checkout"), {"spec": {"strategy": {"canary": None, **bg}}}
    )
    rollouts.wait(lambda s: (s.get("blueGreen") or {}).get("activeServerGroup") == V2)
    rollouts.set_image(IMAGE_V3)
    rollouts.wait_healthy("checkout-v003")
    assert rollouts.sizes()["checkout-v003"] == (4, 4)


# --- with analysis: a web metric answered by a server this test runs -------------------------------


class Health:
    """A tiny endpoint the analysis asks; the test decides what it answers."""

    def __init__(self) -> None:
        self.errors = 0.0
        self.server = LocalHttpServer({"/health": self._answer})

    def _answer(self, _: Request) -> Reply:
        return Reply(200, {"errors": self.errors})

    def template(self, rollouts: Rollouts, name: str = "health", delay: str | None = None) -> None:
        metric: dict[str, Any] = {
            "name": "errors",
            "provider": {"web": {"url": self.server.url("/health"), "jsonPath": "$.errors"}},
            "successCondition": "result < 0.05",
            "failureCondition": "result >= 0.05",
        }
        if delay:
            metric["initialDelay"] = delay
        body = {
            "apiVersion": "herdsman.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": name},
            "spec": {"metrics": [metric]},
        }
        rollouts.rest.create(ANALYSIS_TEMPLATES.url(rollouts.ns), body)


@pytest.fixture
def health() -> Iterator[Health]:
    h = Health()
    h.server.start()
    yield h
    h.server.stop()


ANALYSIS = {"templates": [{"templateName": "health"}]}


def run_phase(rollouts: Rollouts, name: str) -> str:
    body = rollouts.rest.get(ANALYSIS_RUNS.url(rollouts.ns, name))
    return str(((body or {}).get("status") or {}).get("phase") or "")


def test_a_failing_pre_promotion_analysis_never_moves_the_active_service(
    operator: OperatorProcess, rollouts: Rollouts, active_log: Any, health: Health
) -> None:
    health.template(rollouts)
    rollouts.create(blue_green(prePromotionAnalysis=ANALYSIS, abortScaleDownDelaySeconds=1))
    rollouts.wait_healthy(V1)
    log = active_log()
    health.errors = 0.5
    rollouts.set_image(IMAGE_V2)

    status = rollouts.wait_phase("Degraded", timeout=60)
    assert "prepromotion" in status["message"]
    assert run_phase(rollouts, "checkout-v002-prepromotion-a0") == "Failed"
    assert health.server.hits("/health") >= 1
    rollouts.wait(lambda _: rollouts.sizes()[V2] == (0, 0), what="preview scaled down")
    assert log.groups() == [V1]
    assert rollouts.selector("checkout-preview")[LABEL_GROUP] == V1
    assert operator.logged("checkout", "RolloutAborted").count("RolloutAborted") == 1


def test_a_failing_post_promotion_analysis_switches_back_to_the_warm_group(
    operator: OperatorProcess, rollouts: Rollouts, active_log: Any, health: Health
) -> None:
    health.template(rollouts, delay="2s")
    rollouts.create(blue_green(postPromotionAnalysis=ANALYSIS, abortScaleDownDelaySeconds=1))
    rollouts.wait_healthy(V1)
    log = active_log()
    health.errors = 0.5
    rollouts.set_image(IMAGE_V2)

    # The old group serves throughout: it never loses a pod while v2 is tried.
    served: list[tuple[int, int]] = []
    stop = threading.Event()

    def watch_v1() -> None:
        while not stop.is_set():
            served.append(rollouts.sizes()[V1])
            time.sleep(0.1)

    watcher = threading.Thread(target=watch_v1, daemon=True)
    watcher.start()
    try:
        rollouts.wait(lambda s: (s.get("blueGreen") or {}).get("activeServerGroup") == V2)
        status = rollouts.wait_phase("Degraded", timeout=60)
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert "postpromotion" in status["message"]
    assert status["blueGreen"]["activeServerGroup"] == V1
    assert log.groups() == [V1, V2, V1]
    assert served
    assert set(served) == {(4, 4)}
    rollouts.wait(lambda _: rollouts.sizes()[V2] == (0, 0), what="v2 scaled down")
    [aborted] = [t for t in operator.transitions("checkout") if t.reason == "RolloutAborted"]
    assert "back to checkout-v001" in aborted.message
