"""Notifications on a real control plane, to a real HTTP receiver in the test: one message per
transition (also when the receiver answers 500 at first), a hanging receiver that does not slow
a rollout, and a subscription to an unknown service held as InvalidSpec naming its annotation."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import Cluster, wait_until
from harness.local_http import LocalHttpServer, Reply, Request
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from herdsman.cli import actions

pytestmark = pytest.mark.e2e

ARGO = "notifications.argoproj.io/subscribe."
TRIGGERS = ("on-rollout-step-started", "on-rollout-paused", "on-rollout-aborted")


class Receiver:
    """Answers 500 to the first `failures` requests, then 200; keeps what it accepted."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self.lock = threading.Lock()
        self.server = LocalHttpServer({"/hook": self.answer}).start()

    def answer(self, request: Request) -> Reply:
        with self.lock:
            if self.refused < self.failures:
                self.refused += 1
                return Reply(500, "not now")
            self.accepted.append(json.loads(request.body))
        return Reply(200, {})

    def messages(self) -> list[str]:
        with self.lock:
            return [str(m.get("message", "")) for m in self.accepted]


@pytest.fixture
def notified(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, Receiver, LocalHttpServer]]:
    receiver = Receiver(failures=2)
    hanging = LocalHttpServer({"/slow": lambda _r: (hanging.release.wait(60), Reply(200))[1]})
    hanging.start()
    config = {
        "service.hook": f"json://127.0.0.1:{receiver.server.port}/hook",
        "service.slow": f"json://127.0.0.1:{hanging.port}/slow",
        "template.on-rollout-aborted": "ABORT {rollout} revision {revision}: {message}",
    }
    cluster.rest.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "herdsman-notifications"}, "data": config},
    )
    proc = OperatorProcess(
        cluster=cluster,
        namespaces=[namespace],
        log_path=tmp_path / "operator.log",
        extra_args=["--notifications-configmap", f"{namespace}/herdsman-notifications"],
    )
    proc.start()
    yield proc, receiver, hanging
    proc.stop()
    hanging.stop()
    receiver.server.stop()


def subscribed(body: dict[str, Any], service: str, triggers: tuple[str, ...]) -> dict[str, Any]:
    body["metadata"]["annotations"] = {f"{ARGO}{t}.{service}": "" for t in triggers}
    return body


def test_one_message_per_transition_even_after_a_500(
    notified: tuple[OperatorProcess, Receiver, LocalHttpServer], rollouts: Rollouts
) -> None:
    operator, receiver, _ = notified
    rollouts.create(subscribed(rollout(replicas=4), "hook", TRIGGERS))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    actions.abort(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_phase("Degraded")

    def settled() -> list[str] | None:
        got = receiver.messages()
        return got if len(got) >= 4 else None

    got = wait_until(settled, timeout=30, what="four messages", describe=receiver.messages)
    time.sleep(3)  # nothing more comes: no duplicate after the retries
    got = receiver.messages()
    assert receiver.refused == 2
    ns = rollouts.ns
    assert len(got) == 4, got
    assert sum("step 1/2: setWeight 20" in m for m in got) == 1
    assert sum("step 2/2: pause (until promoted)" in m for m in got) == 1
    assert sum(m.startswith(f"{ns}/checkout revision 2 paused at step 2/2") for m in got) == 1
    aborted = [m for m in got if m.startswith(f"ABORT {ns}/checkout revision 2: ")]
    assert len(aborted) == 1, got
    assert "aborted by user" in aborted[0]
    assert re.search(r"delivered \(attempt [23]\)", operator.log())  # retried after the 500s


def test_a_hanging_receiver_never_slows_a_rollout(
    notified: tuple[OperatorProcess, Receiver, LocalHttpServer], rollouts: Rollouts
) -> None:
    _, _, hanging = notified
    steps = [{"setWeight": 25}, {"setWeight": 50}, {"setWeight": 75}]

    def release_time(name: str, body: dict[str, Any]) -> float:
        rollouts.create(body)
        rollouts.wait_healthy(f"{name}-v001", name=name)
        started = time.monotonic()
        rollouts.set_image(IMAGE_V2, name=name)
        rollouts.wait_healthy(f"{name}-v002", name=name, timeout=90)
        return time.monotonic() - started

    quiet = release_time("quiet", rollout("quiet", replicas=4, steps=steps))
    trigger = ("on-rollout-step-started",)
    loud = release_time(
        "loud", subscribed(rollout("loud", replicas=4, steps=steps), "slow", trigger)
    )
    print(f"release without notifications {quiet:.1f}s, to a hanging receiver {loud:.1f}s")
    assert loud < quiet + 3.0
    # It was called, and hangs. Delivery runs on a thread of its own, so a release that is
    # quicker than that thread (0.4 s here once) may be Healthy before the first call lands.
    called_at = time.monotonic()
    wait_until(lambda: len(hanging.requests) >= 1, timeout=10, what="the hanging receiver called")
    print(f"hanging receiver called {time.monotonic() - called_at:.2f}s after the release ended")


def test_an_unknown_service_is_invalid_spec_naming_the_annotation(
    notified: tuple[OperatorProcess, Receiver, LocalHttpServer], rollouts: Rollouts
) -> None:
    rollouts.create(subscribed(rollout(replicas=2), "nope", ("on-rollout-completed",)))
    status = rollouts.wait_phase("Degraded")
    key = f"{ARGO}on-rollout-completed.nope"
    assert f"metadata.annotations[{key}]: unknown notification service 'nope'" in status["message"]
