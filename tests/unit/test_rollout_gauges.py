"""The per-rollout gauges: what a pass records is what Prometheus scrapes, and a forgotten
rollout leaves no series (read through prometheus_client's public `get_sample_value`)."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from sim import Sim, manifest

from herdsman import metrics

pytestmark = pytest.mark.unit


def value(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        name, {"namespace": "shop", "rollout": "checkout", **labels}
    )


@pytest.fixture(autouse=True)
def clean() -> None:
    metrics.forget("shop", "checkout")


def test_a_pass_exports_phase_step_weights_and_replicas() -> None:
    sim = Sim.of(manifest(replicas=10, steps=[{"setWeight": 20}, {"pause": {}}]))
    sim.reconcile()
    sim.settle()
    sim.set_image("app:v2")
    for _ in range(4):
        decision = sim.reconcile()
        sim.settle()
    metrics.record_pass(sim.rollout, decision, sim.now)
    st = decision.status
    assert st.phase == "Paused"
    assert value("herdsman_rollout_phase", phase="Paused") == 1
    assert value("herdsman_rollout_phase", phase="Healthy") == 0
    assert value("herdsman_rollout_steps") == 2
    assert value("herdsman_rollout_step") == (st.current_step_index or 0) + 1
    assert value("herdsman_rollout_canary_weight") == 20
    assert value("herdsman_rollout_traffic_weight", role="canary") == st.weights.canary
    canary = sum(g.replicas for g in st.server_groups if g.role == "canary")
    assert canary == 2
    assert value("herdsman_rollout_replicas", role="canary") == canary
    assert value("herdsman_rollout_replicas", role="preview") == 0
    assert value("herdsman_chaos_active") == 0
    assert value("herdsman_release_cost", team="", currency=metrics.cost.PRICES.currency) == 0


def test_a_score_survives_the_next_pass_and_forget_removes_everything() -> None:
    sim = Sim.of(manifest())
    decision = sim.reconcile()
    metrics.rollout_gauges.score("shop", "checkout", "checkout-v002-a0", 87.5)
    metrics.record_pass(sim.rollout, decision, sim.now)
    assert value("herdsman_analysis_score", run="checkout-v002-a0") == 87.5
    assert value("herdsman_rollout_phase", phase=decision.status.phase or "") == 1
    metrics.forget("shop", "checkout")
    assert value("herdsman_analysis_score", run="checkout-v002-a0") is None
    assert value("herdsman_rollout_phase", phase="Healthy") is None
    assert value("herdsman_rollout_steps") is None


def test_every_family_is_described_even_with_no_rollout() -> None:
    names = metrics.metric_names()
    for name in metrics.rollout_gauges.describe():
        assert name.name in names


def test_a_released_rollout_exports_no_created_series() -> None:
    # `_created` series were a fifth of the scrape at scale and nothing reads them.
    sim = Sim.of(manifest(replicas=10, steps=[{"setWeight": 20}, {"pause": {"duration": "5s"}}]))
    for _ in range(3):
        metrics.record_pass(sim.rollout, sim.reconcile(), sim.now)
        sim.settle()
    sim.set_image("app:v2")
    for _ in range(12):
        decision = sim.reconcile()
        metrics.record_pass(sim.rollout, decision, sim.now)
        sim.settle()
        sim.tick(5)
    assert decision.status.phase == "Healthy"
    mine = [
        line
        for line in generate_latest(metrics.REGISTRY).decode().splitlines()
        if 'rollout="checkout"' in line
    ]
    assert any(line.startswith("herdsman_rollout_transitions_total") for line in mine)
    assert not [line for line in mine if "_created" in line]
