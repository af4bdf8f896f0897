"""The watch-fed cache under crashes (issue 17): the operator SIGKILLed while its cache fills,
and right after a write whose response only the cache knew.

What could go wrong, and what each test would show:
- a pass that ran on a half-filled cache would see a rollout with no server groups and create
  one again (a group beyond v002), or move a paused rollout on;
- a restarted operator that trusted a write it never saw confirmed would skip or repeat a step
  (a step announced twice, a group created twice).
Both must be impossible: the cache is rebuilt by a full list before the first pass, so a
restart starts from the cluster's truth.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest

from harness.cluster import wait_until
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from herdsman.cli import actions

pytestmark = pytest.mark.e2e

MANY = 12


def _state(rollouts: Rollouts, name: str) -> tuple[Any, ...]:
    status = rollouts.status(name)
    return (
        status.get("phase"),
        status.get("step"),
        status.get("stableServerGroup"),
        status.get("canaryServerGroup"),
        tuple(sorted((g, size[0]) for g, size in rollouts.sizes(name).items())),
    )


def test_killed_while_the_cache_fills_restarts_from_the_clusters_truth(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    names = [f"app{i:02d}" for i in range(MANY)]
    for name in names:
        rollouts.create(rollout(name, replicas=2, steps=[{"setWeight": 50}, {"pause": {}}]))
    for name in names:
        rollouts.wait_healthy(f"{name}-v001", name=name)
    for name in names:
        rollouts.set_image(IMAGE_V2, name=name)
    for name in names:
        rollouts.wait_phase("Paused", step="2/2", name=name)
    before = {name: _state(rollouts, name) for name in names}

    # Started, then killed at once and a little later: before, during and just after the full
    # list that fills the cache (a dozen rollouts, two groups each, on a local control plane).
    for delay in (0.0, 0.1, 0.3, 0.6, 1.0):
        operator.kill()
        operator.start()
        time.sleep(delay)
    operator.kill()
    # Nothing moved, and nothing was created twice, while the operator kept dying.
    assert {name: _state(rollouts, name) for name in names} == before

    operator.start()
    time.sleep(2.0)  # every rollout had its first pass on the freshly filled cache
    assert {name: _state(rollouts, name) for name in names} == before
    for name in names:
        actions.promote(rollouts.rest, rollouts.ns, name)
    for name in names:
        rollouts.wait_healthy(f"{name}-v002", name=name)
        assert set(rollouts.groups(name)) == {f"{name}-v001", f"{name}-v002"}
        created = [t for t in operator.transitions(name) if t.reason == "ServerGroupCreated"]
        assert [t.revision for t in created] == ["1", "2"], created
    assert not operator.errors()


def test_killed_right_after_each_write_repeats_and_skips_nothing(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    steps = [
        {"setWeight": 25},
        {"pause": {"duration": "1s"}},
        {"setWeight": 50},
        {"pause": {"duration": "1s"}},
        {"setWeight": 75},
        {"pause": {}},
    ]
    rollouts.create(rollout(replicas=4, steps=steps))
    rollouts.wait_healthy("checkout-v001")
    operator.wait_for("RolloutHealthy", rollout="checkout")  # revision 1's last line is out
    rollouts.set_image(IMAGE_V2)

    # Every transition line is logged right after its status write succeeded — the moment
    # the write's response sits in the cache and the watch may not have delivered it yet.
    # SIGKILL the operator there, each time, until the rollout waits at its last pause.
    def written_since(seen: int) -> bool:
        return len(operator.transitions("checkout")) > seen

    kills = 0
    steps_seen: list[int] = []
    v002_uid = None
    # Counted when the operator is (re)started, not after: a restarted operator may write its
    # next step before this loop looks again, and that write must be the next one cut.
    seen = len(operator.transitions("checkout"))
    for _ in range(12):
        done = rollouts.status()
        if done.get("step") == "6/6" and done.get("phase") == "Paused":
            break  # a restarted operator got there before we looked: nothing left to cut
        try:
            wait_until(
                functools.partial(written_since, seen),
                timeout=20,
                what="the next write",
                interval=0.005,
            )
        except AssertionError:
            break  # no write left to interrupt: it waits for the promote
        operator.kill()
        kills += 1
        status = rollouts.status()
        step = status.get("step", "0/6")
        steps_seen.append(int(step.split("/")[0]))
        group = rollouts.groups().get("checkout-v002")
        if group is not None:
            v002_uid = v002_uid or group["metadata"]["uid"]
            assert group["metadata"]["uid"] == v002_uid, "checkout-v002 was created twice"
        if step == "6/6" and status.get("phase") == "Paused":
            break
        seen = len(operator.transitions("checkout"))
        operator.start()
    assert kills >= 4, "the run should have been interrupted after several writes"
    # The step never went back: no restart acted on a state older than its own last write.
    assert steps_seen == sorted(steps_seen), steps_seen
    if not operator.alive:
        operator.start()
    rollouts.wait_phase("Paused", step="6/6", timeout=60)
    assert rollouts.sizes()["checkout-v002"][0] == 3
    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_healthy("checkout-v002")
    assert set(rollouts.groups()) == {"checkout-v001", "checkout-v002"}
    assert rollouts.groups()["checkout-v002"]["metadata"]["uid"] == v002_uid
    # Announcements follow the status write, so a kill between the write and its log line
    # loses that line (at most once, by design); what must never happen is a repeat — a step
    # started twice, a group created twice — or a step out of order.
    expected = [
        "setWeight 25",
        "pause 1s",
        "setWeight 50",
        "pause 1s",
        "setWeight 75",
        "pause (until promoted)",
    ]
    started = [
        t.message.split(": ", 1)[1]
        for t in operator.transitions("checkout")
        if t.reason == "StepStarted" and t.revision == "2"
    ]
    numbers = [
        int(t.step.split("/")[0])
        for t in operator.transitions("checkout")
        if t.reason == "StepStarted" and t.revision == "2"
    ]
    assert numbers == sorted(set(numbers)), started
    assert all(expected[n - 1] == text for n, text in zip(numbers, started, strict=True))
    created = [t for t in operator.transitions("checkout") if t.reason == "ServerGroupCreated"]
    assert [t.revision for t in created].count("2") <= 1
