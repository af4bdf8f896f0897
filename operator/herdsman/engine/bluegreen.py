"""The blue/green strategy (see validation: refused until it lands)."""

from __future__ import annotations

from herdsman.engine.plan import Plan


def decide(plan: Plan) -> None:
    # Unreachable while validation refuses blueGreen specs; kept so decide() has one dispatch.
    plan.condition("InvalidSpec", True, "InvalidSpec", "blue/green is not available yet")
