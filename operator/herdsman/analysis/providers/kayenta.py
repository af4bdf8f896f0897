"""The Kayenta provider: the canary judgement is delegated to a Kayenta service.

As Argo does it: look up the canary config's id by name (`GET /canaryConfig`), start a canary
execution (`POST /canary/{configId}` with the scopes and thresholds), then read it
(`GET /canary/{executionId}`) until it is complete. Its score decides the phase, not a
condition: at least `threshold.pass` is Successful, at least `threshold.marginal` Inconclusive,
below that Failed. `result` (the measurement's value) is the score.

Scopes without `start` begin at the run's start with `lookback: true`, else one metric
interval ago (5 minutes for a metric without an interval); without `end`, now.

Argo parks the measurement as Running and comes back every 15 s. Herdsman's measurements are
taken within one reconcile, so the execution is polled within the measurement's deadline; one
that is still running then is an Error ("still running") and the execution's id is kept, in
memory, so the next measurement reads that execution instead of starting another. (An operator
restart forgets it and starts a fresh execution: repeated work, never a wrong verdict.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from herdsman.analysis.conditions import Observation, Outcome
from herdsman.analysis.providers.base import Provider, ProviderContext
from herdsman.analysis.providers.http import (
    ProviderResponseError,
    base_url,
    exchange,
    with_retries,
)
from herdsman.api.providers import KayentaMetric, KayentaScopeDetail
from herdsman.cluster.budget import Deadline

POLL_EVERY = 1.0
DEFAULT_WINDOW = 300.0
PENDING_TTL = 3600.0
"""How long an unfinished execution's id is remembered."""


class StillRunning(TimeoutError):
    """The execution did not complete within the measurement's deadline."""


@dataclass(frozen=True)
class _Pending:
    execution: str
    since: float


_PENDING: dict[str, _Pending] = {}


def _identity(spec: KayentaMetric, context: ProviderContext) -> str:
    material = json.dumps(
        [context.namespace, context.metric, spec.model_dump(mode="json", by_alias=True)],
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def scope_body(detail: KayentaScopeDetail, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "scope": detail.scope,
        "region": detail.region,
        "step": detail.step,
        "start": detail.start or _iso(start),
        "end": detail.end or _iso(end),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def score_of(document: Any) -> float | None:
    """The score of a complete execution, None while it runs; a failed one raises."""
    if not isinstance(document, dict) or "complete" not in document:
        raise ProviderResponseError(f"kayenta answered without `complete`: {str(document)[:200]}")
    if not document["complete"]:
        return None
    try:
        return float(document["result"]["judgeResult"]["score"]["score"])
    except (KeyError, TypeError, ValueError) as exc:
        detail = document.get("exception") or document.get("status") or "no score"
        raise ProviderResponseError(
            f"kayenta execution completed without a score: {detail}"
        ) from exc


class KayentaProvider(Provider[KayentaMetric]):
    key = "kayenta"

    def __init__(self, poll_every: float = POLL_EVERY) -> None:
        self.poll_every = poll_every

    async def _json(
        self,
        context: ProviderContext,
        deadline: Deadline,
        what: str,
        method: str,
        url: str,
        **kw: Any,
    ) -> Any:
        async def attempt(attempt_deadline: Deadline) -> Any:
            answer = await exchange(method, url, attempt_deadline, **kw)
            return answer.json()

        return await with_retries(context, deadline, what, attempt)

    async def _start(
        self, spec: KayentaMetric, context: ProviderContext, deadline: Deadline
    ) -> str:
        address = base_url(spec.address)
        configs = await self._json(
            context,
            deadline,
            "kayenta canaryConfig lookup",
            "GET",
            f"{address}/canaryConfig",
            params={
                "application": spec.application,
                "configurationAccountName": spec.configuration_account_name,
            },
        )
        config_id = next(
            (
                c.get("id")
                for c in configs or []
                if isinstance(c, dict) and c.get("name") == spec.canary_config_name
            ),
            None,
        )
        if not config_id:
            raise ProviderResponseError(
                f"kayenta has no canary config {spec.canary_config_name!r}"
                f" for application {spec.application!r}"
            )
        end = datetime.now(UTC)
        if spec.lookback and context.run_started is not None:
            start = context.run_started
        else:
            start = end - timedelta(seconds=context.interval or DEFAULT_WINDOW)
        body = {
            "scopes": {
                scope.name: {
                    "controlScope": scope_body(scope.control_scope, start, end),
                    "experimentScope": scope_body(scope.experiment_scope, start, end),
                }
                for scope in spec.scopes
            },
            "thresholds": {"pass": spec.threshold.pass_, "marginal": spec.threshold.marginal},
        }
        started = await self._json(
            context,
            deadline,
            "kayenta canary start",
            "POST",
            f"{address}/canary/{config_id}",
            params={
                "application": spec.application,
                "metricsAccountName": spec.metrics_account_name,
                "configurationAccountName": spec.configuration_account_name,
                "storageAccountName": spec.storage_account_name,
            },
            json_body=body,
        )
        execution = started.get("canaryExecutionId") if isinstance(started, dict) else None
        if not execution:
            raise ProviderResponseError(
                "kayenta started no canary execution (no canaryExecutionId)"
            )
        return str(execution)

    async def observe(
        self, spec: KayentaMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        identity = _identity(spec, context)
        now = time.monotonic()
        for key in [k for k, p in _PENDING.items() if now - p.since > PENDING_TTL]:
            del _PENDING[key]
        pending = _PENDING.get(identity)
        if pending is None:
            pending = _Pending(await self._start(spec, context, deadline), now)
            _PENDING[identity] = pending
        url = f"{base_url(spec.address)}/canary/{pending.execution}"
        while True:
            document = await self._json(context, deadline, "kayenta canary read", "GET", url)
            try:
                score = score_of(document)
            except ProviderResponseError:
                _PENDING.pop(identity, None)
                raise
            if score is not None:
                _PENDING.pop(identity, None)
                return Observation(score)
            wait = min(self.poll_every, deadline.remaining() - deadline.margin)
            if wait <= 0 or deadline.remaining() <= self.poll_every + deadline.margin:
                raise StillRunning(
                    f"kayenta canary execution {pending.execution} is still running;"
                    " the next measurement reads it again"
                )
            await asyncio.sleep(wait)

    def outcome(self, spec: KayentaMetric, observation: Observation) -> Outcome | None:
        score = float(observation.result)
        if score >= spec.threshold.pass_:
            return Outcome("Successful", f"kayenta score {score:g}")
        if score >= spec.threshold.marginal:
            return Outcome("Inconclusive", f"kayenta score {score:g} is marginal")
        return Outcome("Failed", f"kayenta score {score:g} is below {spec.threshold.marginal}")
