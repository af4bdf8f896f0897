"""Release cost as money: from the pods' requests, the time extra pods ran and the prices."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sim import Sim, manifest

from herdsman.api.rollout_status import CostStatus
from herdsman.engine import cost
from herdsman.engine.cost import Prices, charge, money, quantity

pytestmark = pytest.mark.unit

ROLES = ("canary", "baseline", "preview", "old")


def requesting(body: dict[str, Any], cpu: str, memory: str) -> dict[str, Any]:
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"cpu": cpu, "memory": memory}}
    return body


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", 0.25),
        ("2", 2.0),
        ("1.5", 1.5),
        ("512Mi", 2.0**29),
        ("1Gi", 2.0**30),
        ("1G", 1e9),
        ("1e3", 1000.0),
        ("junk", 0.0),
    ],
)
def test_quantities_read_as_kubernetes_writes_them(text: str, value: float) -> None:
    assert quantity(text) == pytest.approx(value)


@given(
    st.lists(
        st.tuples(
            st.fixed_dictionaries({r: st.integers(0, 50) for r in ROLES}),
            st.floats(-100, 1e5, allow_nan=False),
        ),
        max_size=20,
    ),
    st.floats(0, 64, allow_nan=False),
    st.floats(0, 256, allow_nan=False),
    st.floats(0, 10, allow_nan=False),
    st.floats(0, 10, allow_nan=False),
)
def test_cost_is_never_negative_and_zero_without_extra_pods(
    intervals: list[tuple[dict[str, int], float]],
    cores: float,
    gib: float,
    cpu_price: float,
    gib_price: float,
) -> None:
    cost.configure(Prices(cpu_hour=cpu_price, gib_hour=gib_price))
    try:
        bill = CostStatus()
        for extra, seconds in intervals:
            charge(bill, extra, seconds, (cores, gib))
        assert bill.amount >= 0
        assert bill.cpu_core_seconds >= 0
        pod_seconds = sum(sum(e.values()) * max(0.0, s) for e, s in intervals)
        if pod_seconds == 0:
            assert bill.amount == 0
        expected = money(pod_seconds * cores, pod_seconds * gib, cost.PRICES)
        assert bill.amount == pytest.approx(expected, rel=1e-6, abs=1e-9)
    finally:
        cost.configure(Prices())


def release(body: dict[str, Any]) -> Sim:
    s = Sim.of(body)
    s.run_until(lambda s: s.status.phase == "Healthy")
    s.set_image("app:v2")
    s.run_until(lambda s: s.status.phase == "Paused")
    s.tick(100)
    s.promote(full=True)
    s.run_until(lambda s: s.status.phase == "Healthy" and s.status.stable_revision == 2)
    s.set_image("app:v3")  # the next release closes this one's bill into the history
    s.reconcile()
    return s


def test_a_release_with_no_extra_pods_costs_nothing() -> None:
    body = manifest(replicas=10, steps=[{"setWeight": 20}, {"pause": {}}], maxSurge=0)
    s = release(requesting(body, "1", "1Gi"))
    # Every pass of the release: no bill at all, or a bill of zero.
    bills = [d.status.cost for d in s.history]
    assert all(
        b is None or (b.amount == 0 and all(h.amount == 0 for h in b.history)) for b in bills
    )
    assert s.status.stable_revision == 2


def test_a_routed_canary_costs_its_pods_requests_for_as_long_as_they_ran() -> None:
    body = manifest(
        replicas=10,
        steps=[{"setWeight": 20}, {"pause": {}}],
        stableService="checkout",
        canaryService="checkout-canary",
        trafficRouting={"gatewayAPI": {"httpRoute": "checkout"}},
    )
    s = release(requesting(body, "500m", "2Gi"))
    bill = s.status.cost.history[-1]
    assert bill.replica_seconds >= 2 * 100  # two canary pods beside a full stable, 100 s paused
    assert bill.cpu_core_seconds == pytest.approx(bill.replica_seconds * 0.5)
    assert bill.memory_gib_seconds == pytest.approx(bill.replica_seconds * 2)
    assert bill.amount == pytest.approx(
        (bill.cpu_core_seconds * 0.0316 + bill.memory_gib_seconds * 0.0042) / 3600
    )
