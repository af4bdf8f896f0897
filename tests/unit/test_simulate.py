"""`herdsman simulate`: its command line and the weights it follows, without a cluster."""

from __future__ import annotations

import argparse
from typing import Any, cast

import pytest

from herdsman.cluster.kube import Rest
from herdsman.simulate import Behaviour, TrafficSimulator, rollout_weights
from herdsman.simulate.cli import behaviour

pytestmark = pytest.mark.unit


def test_a_behaviour_names_an_image_and_how_it_answers() -> None:
    image, b = behaviour("registry.k8s.io/pause:3.10.1=latency:0.13,errors:0.05")
    assert image == "registry.k8s.io/pause:3.10.1"
    assert b == Behaviour(error_rate=0.05, latency=0.13)
    for bad in ("no-equals", "img=speed:1", "img=errors:2", "img=latency:x"):
        with pytest.raises(argparse.ArgumentTypeError):
            behaviour(bad)


class FakeRest:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def get(self, path: str) -> dict[str, Any]:
        return self.body


def test_status_weights_send_each_role_its_share_of_the_requests() -> None:
    status = {
        "stableServerGroup": "c-v1",
        "canaryServerGroup": "c-v2",
        "baselineServerGroup": "c-v1-baseline",
        "weights": {"stable": 80, "canary": 10, "baseline": 10},
    }
    read = rollout_weights(cast(Rest, FakeRest({"status": status})), "shop", "c")
    assert read() == {"c-v1": 80.0, "c-v2": 10.0, "c-v1-baseline": 10.0}
    from herdsman.simulate import GroupInfo

    groups = {g: GroupInfo(image=g, available=1) for g in ("c-v1", "c-v2", "c-v1-baseline")}
    sim = TrafficSimulator(lambda: groups, {"c-v2": Behaviour(error_rate=1.0)}, weights=read)
    for _ in range(50):
        sim.step()
    total = sum(sim.sent.values())
    assert 0.05 < sim.sent["c-v2"] / total < 0.15
    assert sim.requests.labels(group="c-v2", code="500")._value.get() == sim.sent["c-v2"]


def test_a_fragile_version_errs_only_while_its_group_has_lost_pods() -> None:
    from herdsman.simulate import GroupInfo

    image, fragile = behaviour("app:v2=latency:0.1,lost-errors:1")
    assert fragile.degraded == Behaviour(latency=0.1, error_rate=1.0)
    groups = {"c-v2": GroupInfo(image=image, available=4)}
    sim = TrafficSimulator(lambda: groups, {image: fragile})

    def errors() -> float:
        value: float = sim.requests.labels(group="c-v2", code="500")._value.get()
        return value

    for _ in range(5):
        sim.step()
    assert errors() == 0  # all its pods: healthy
    groups["c-v2"] = GroupInfo(image=image, available=2)  # two pods killed
    sim.step()
    assert errors() == sim.requests_per_tick
    groups["c-v2"] = GroupInfo(image=image, available=4)  # back
    before = errors()
    sim.step()
    assert errors() == before
