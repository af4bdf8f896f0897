"""`kubectl herdsman cost`: bills summed per rollout and namespace over a period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herdsman.cli.cost import bill, by_namespace, since

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def body(ns: str, name: str, current: float, past: list[tuple[float, datetime]]) -> dict[str, Any]:
    history = [
        {"revision": i + 1, "endedAt": ended.isoformat(), "amount": amount, "cpuCoreSeconds": 3600}
        for i, (amount, ended) in enumerate(past)
    ]
    return {
        "metadata": {"namespace": ns, "name": name},
        "status": {"cost": {"amount": current, "cpuCoreSeconds": 0, "history": history}},
    }


def test_a_period_counts_the_releases_that_ended_in_it_and_the_current_one() -> None:
    start = since("7d", NOW)
    assert start == NOW - timedelta(days=7)
    b = bill(body("shop", "a", 1.0, [(5.0, NOW - timedelta(days=9)), (2.0, NOW)]), start)
    assert (b.releases, b.amount, b.cpu_core_hours) == (2, 3.0, 1.0)
    assert since("30m", NOW) == NOW - timedelta(minutes=30)


def test_namespaces_total_their_rollouts_and_a_rollout_never_billed_costs_nothing() -> None:
    start = since("24h", NOW)
    bills = [
        bill(body("shop", "a", 1.0, []), start),
        bill(body("shop", "b", 0.5, []), start),
        bill({"metadata": {"namespace": "web", "name": "c"}}, start),
    ]
    assert by_namespace(bills) == {"shop": 1.5, "web": 0.0}
    assert bills[2].releases == 0


def test_a_bad_period_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        since("soon", NOW)
