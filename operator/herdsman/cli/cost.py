"""`kubectl herdsman cost`: what releases spent on extra pods, per rollout and per namespace.

Read from each Rollout's `status.cost`: the current release's bill so far and the history of past
releases' bills (each closed when the next revision started). A release counts in a period when it
ended in it (the current one: when it is still running in it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rich.table import Table

from herdsman.api.base import duration_seconds
from herdsman.api.rollout_status import CostStatus


@dataclass(frozen=True)
class Bill:
    namespace: str
    rollout: str
    releases: int
    amount: float
    cpu_core_hours: float
    memory_gib_hours: float
    currency: str


def since(period: str, now: datetime) -> datetime:
    """`7d`, `24h`, `30m` (or seconds) before `now`."""
    text = period.strip()
    if text.endswith("d") and text[:-1].isdigit():
        return now - timedelta(days=int(text[:-1]))
    seconds = duration_seconds(text)
    assert seconds is not None
    return now - timedelta(seconds=seconds)


def bill(body: dict[str, Any], start: datetime) -> Bill:
    meta = body["metadata"]
    raw = (body.get("status") or {}).get("cost")
    cost = CostStatus.model_validate(raw) if raw else CostStatus()
    releases = [h for h in cost.history if h.ended_at is None or h.ended_at >= start]
    amount = sum(h.amount for h in releases)
    cpu = sum(h.cpu_core_seconds for h in releases)
    mem = sum(h.memory_gib_seconds for h in releases)
    if raw:
        releases_count = len(releases) + 1
        amount += cost.amount
        cpu += cost.cpu_core_seconds
        mem += cost.memory_gib_seconds
    else:
        releases_count = len(releases)
    return Bill(
        namespace=meta.get("namespace", ""),
        rollout=meta["name"],
        releases=releases_count,
        amount=amount,
        cpu_core_hours=cpu / 3600,
        memory_gib_hours=mem / 3600,
        currency=cost.currency,
    )


def by_namespace(bills: Iterable[Bill]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for b in bills:
        totals[b.namespace] = totals.get(b.namespace, 0.0) + b.amount
    return totals


def table(bills: list[Bill], period: str) -> Table:
    t = Table(title=f"Extra cost of releases, last {period}", title_justify="left")
    for column in ("NAMESPACE", "ROLLOUT", "RELEASES", "CPU-HOURS", "GIB-HOURS", "COST"):
        t.add_column(column, justify="right" if column not in ("NAMESPACE", "ROLLOUT") else "left")
    for b in bills:
        t.add_row(
            b.namespace,
            b.rollout,
            str(b.releases),
            f"{b.cpu_core_hours:.3f}",
            f"{b.memory_gib_hours:.3f}",
            f"{b.amount:.4f} {b.currency}",
        )
    currency = bills[0].currency if bills else "USD"
    for ns, amount in sorted(by_namespace(bills).items()):
        t.add_row(ns, "(namespace total)", "", "", "", f"{amount:.4f} {currency}", style="bold")
    return t
