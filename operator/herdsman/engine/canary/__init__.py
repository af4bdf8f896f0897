"""The canary strategy: a new server group beside the stable one, traffic moved step by step.

One call decides one reconcile; the position is `status.currentStepIndex`. The strategy is split
by concern, one module each, like Argo Rollouts' `rollout/` package:

    lifecycle.py   which situation the rollout is in; the status every pass ends with
    steps.py       walking the steps
    traffic.py     replicas and router weights for a weight
    analysis.py    analysis steps and background analysis
    experiment.py  experiment steps
    rollback.py    completion, fast rollback, abort, retry, user pause
    context.py     the pass's shared state

Everything that must survive a crash is written to status; nothing here remembers anything
between calls.
"""

from __future__ import annotations

from herdsman.engine.canary import experiment, lifecycle
from herdsman.engine.canary.context import ROUTER_RECHECK_SECONDS, Canary, describe, weight_before
from herdsman.engine.plan import Plan


def decide(plan: Plan) -> None:
    strategy = plan.spec.strategy.canary
    assert strategy is not None
    c = Canary(plan, strategy)
    lifecycle.run(c)
    experiment.tidy(c)


__all__ = ["ROUTER_RECHECK_SECONDS", "decide", "describe", "weight_before"]
