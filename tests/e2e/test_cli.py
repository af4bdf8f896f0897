"""The kubectl plugin against the real cluster with the operator running, as a user drives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from harness.cluster import Cluster
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V1, IMAGE_V2, Rollouts, rollout
from herdsman.cli.main import main

pytestmark = pytest.mark.e2e


class Plugin:
    """`kubectl herdsman ...` in-process, pointed at the test cluster and namespace."""

    def __init__(self, cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]):
        self.flags = ["-n", namespace, "--kubeconfig", str(cluster.kubeconfig)]
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()  # drop anything earlier
        code = main([*args, *self.flags])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 0, f"kubectl herdsman {' '.join(args)} failed ({code}): {err}"
        assert err == ""
        return out


@pytest.fixture
def plugin(cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]) -> Plugin:
    return Plugin(cluster, namespace, capsys)


def image_of(rollouts: Rollouts) -> str:
    image: str = rollouts.get()["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def test_set_image_status_get_promote_and_promote_full(
    operator: OperatorProcess, rollouts: Rollouts, plugin: Plugin
) -> None:
    steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 75}]
    rollouts.create(rollout(replicas=4, steps=steps))
    rollouts.wait_healthy("checkout-v001")

    out = plugin.ok("set", "image", "checkout", f"app={IMAGE_V2}")
    assert out.strip() == f"rollout {rollouts.ns}/checkout: image updated (app={IMAGE_V2})"
    assert image_of(rollouts) == IMAGE_V2
    rollouts.wait(
        lambda s: (
            s.get("phase") == "Paused"
            and s.get("step") == "2/5"
            and s.get("weights", {}).get("canary") == 25
        ),
        what="paused at 2/5 with 25% on the canary",
    )

    # One-shot status: every group with its role and pods, the split, the current step.
    view = plugin.ok("status", "checkout")
    group_rows = {
        cells[0]: cells[1:7]
        for line in view.splitlines()
        if (cells := [c for c in line.split() if c != "│"]) and cells[0].startswith("checkout-v")
    }
    assert group_rows["checkout-v001"] == ["stable", "1", "3", "3", "3", "-"]
    assert group_rows["checkout-v002"] == ["canary", "2", "1", "1", "1", "-"]
    assert "█ stable 75%  ░ canary 25%" in view
    assert "⏸   2.  pause (until promoted)" in view
    assert "PauseStep" in view

    listing = plugin.ok("get")
    row = next(line.split() for line in listing.splitlines() if line.startswith("checkout"))
    assert row[:7] == [
        "checkout",
        "canary",
        "Paused",
        "2/5",
        "25%",
        "checkout-v001",
        "checkout-v002",
    ]
    assert row[7] == "4/4"
    assert "stable 75%, canary 25%" in plugin.ok("get", "checkout")

    out = plugin.ok("promote", "checkout")
    assert out.strip() == f"rollout {rollouts.ns}/checkout: promotion requested from step 2/5"
    rollouts.wait_phase("Paused", step="4/5")
    assert rollouts.sizes()["checkout-v002"] == (2, 2)

    out = plugin.ok("promote", "checkout", "--full")
    assert "full promotion requested" in out
    rollouts.wait_healthy("checkout-v002")
    rollouts.wait(
        lambda _: rollouts.sizes() == {"checkout-v001": (0, 0), "checkout-v002": (4, 4)},
        what="the old group drained",
    )
    # --full skipped the rest: the 75% step never started.
    started = [t.message for t in operator.transitions("checkout") if t.reason == "StepStarted"]
    assert not any("setWeight 75" in m for m in started)
    assert "PromotedFull" in operator.logged("checkout", "PromotedFull")


def test_abort_then_retry(operator: OperatorProcess, rollouts: Rollouts, plugin: Plugin) -> None:
    rollouts.create(rollout(replicas=4, steps=[{"setWeight": 50}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    code, _, err = plugin("retry", "checkout")
    assert code == 1
    assert err.strip() == f"error: rollout {rollouts.ns}/checkout is not aborted: nothing to retry"

    plugin.ok("set", "image", "checkout", f"app={IMAGE_V2}")
    rollouts.wait_phase("Paused", step="2/2")
    assert plugin.ok("abort", "checkout").strip() == (
        f"rollout {rollouts.ns}/checkout: abort requested"
    )
    rollouts.wait(
        lambda s: s.get("phase") == "Degraded" and s.get("weights", {}).get("stable") == 100,
        what="aborted, all traffic on stable",
    )
    rollouts.wait(
        lambda s: rollouts.sizes() == {"checkout-v001": (4, 4), "checkout-v002": (0, 0)},
        what="canary scaled away",
    )
    assert "Aborted" in plugin.ok("status", "checkout")

    assert "retry requested" in plugin.ok("retry", "checkout")
    status = rollouts.wait_phase("Paused", step="2/2")
    assert status["attempt"] == 1
    assert status.get("abort") is not True
    assert rollouts.sizes()["checkout-v002"] == (2, 2)


def test_pause_holds_and_resume_continues(
    operator: OperatorProcess, rollouts: Rollouts, plugin: Plugin
) -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}]
    rollouts.create(rollout(replicas=4, steps=steps))
    rollouts.wait_healthy("checkout-v001")

    assert plugin.ok("pause", "checkout").strip() == f"rollout {rollouts.ns}/checkout: paused"
    assert rollouts.get()["spec"]["paused"] is True
    plugin.ok("set", "image", "checkout", f"app={IMAGE_V2}")
    status = rollouts.wait(
        lambda s: any(p.get("reason") == "UserPause" for p in s.get("pauseConditions", [])),
        what="a user pause",
    )
    assert status["phase"] == "Paused"
    time.sleep(2.5)  # longer than the timed pause: a paused rollout must not move
    assert rollouts.status().get("step") in (None, "1/4")
    assert rollouts.sizes().get("checkout-v002", (0, 0)) == (0, 0)

    assert plugin.ok("resume", "checkout").strip() == f"rollout {rollouts.ns}/checkout: resumed"
    assert rollouts.get()["spec"]["paused"] is False
    status = rollouts.wait_phase("Paused", step="4/4")
    assert "PauseStep" in [p["reason"] for p in status["pauseConditions"]]
    assert rollouts.sizes()["checkout-v002"] == (2, 2)


def test_resume_clears_the_user_pause(
    operator: OperatorProcess, rollouts: Rollouts, plugin: Plugin
) -> None:
    rollouts.create(rollout(replicas=2, steps=[{"setWeight": 50}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    plugin.ok("pause", "checkout")
    plugin.ok("set", "image", "checkout", f"app={IMAGE_V2}")
    rollouts.wait(
        lambda s: any(p.get("reason") == "UserPause" for p in s.get("pauseConditions", [])),
        what="a user pause",
    )
    plugin.ok("resume", "checkout")
    status = rollouts.wait_phase("Paused", step="2/2")
    assert [p["reason"] for p in status["pauseConditions"]] == ["PauseStep"]
    assert "by user" not in status["message"]


def test_undo_and_restart(operator: OperatorProcess, rollouts: Rollouts, plugin: Plugin) -> None:
    rollouts.create(rollout(replicas=3, steps=[{"setWeight": 50}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    plugin.ok("set", "image", "checkout", f"app={IMAGE_V2}")
    rollouts.wait_phase("Paused", step="2/2")
    plugin.ok("promote", "checkout")
    rollouts.wait_healthy("checkout-v002")

    code, _, err = plugin("undo", "checkout", "--to-revision", "7")
    assert code == 1
    assert err.strip() == f"error: revision 7 of {rollouts.ns}/checkout is not kept (kept: 1, 2)"

    out = plugin.ok("undo", "checkout")
    assert out.strip() == f"rollout {rollouts.ns}/checkout: rolling back to revision 1"
    assert image_of(rollouts) == IMAGE_V1
    rollouts.wait_healthy("checkout-v001")
    assert rollouts.status()["currentRevision"] == 1

    assert "restart requested" in plugin.ok("restart", "checkout")
    restart_at = datetime.fromisoformat(rollouts.get()["spec"]["restartAt"])
    assert abs((datetime.now(UTC) - restart_at).total_seconds()) < 10


def test_errors_are_one_line_against_the_real_api_server(plugin: Plugin, namespace: str) -> None:
    for verb in (["status", "ghost"], ["promote", "ghost"], ["abort", "ghost"], ["get", "ghost"]):
        code, out, err = plugin(*verb)
        assert code == 1, verb
        assert err.strip() == f"error: rollout {namespace}/ghost not found", verb
        assert out == ""
    code, _, err = plugin("set", "image", "ghost", "app=x")
    assert code == 1
    assert "not found" in err


def test_status_watch_redraws_and_exits_cleanly_on_ctrl_c(
    cluster: Cluster, operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(rollout(replicas=2, steps=[{"setWeight": 50}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    args = [sys.executable, "-m", "herdsman.cli.main", "status", "checkout", "--watch"]
    args += ["--interval", "0.3", "-n", rollouts.ns, "--kubeconfig", str(cluster.kubeconfig)]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
        # As a user's terminal gives it: a CI runner that starts the suite as a background job
        # passes SIGINT down ignored, and Python keeps an inherited SIG_IGN.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # While it watches, the rollout moves: the live view must follow it.
        time.sleep(1.5)
        rollouts.set_image(IMAGE_V2)
        rollouts.wait_phase("Paused", step="2/2")
        time.sleep(1.5)
        assert proc.poll() is None, "the watch ended by itself"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # The final frame shows the canary that appeared during the watch.
    assert "checkout-v002" in out
    assert "canary" in out
