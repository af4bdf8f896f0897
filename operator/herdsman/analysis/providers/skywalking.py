"""The Apache SkyWalking provider: a GraphQL query to the OAP server's `/graphql`.

The query gets the variable `$duration` (start and end in SkyWalking's minute format,
`2006-01-02 1504`, step MINUTE) covering `interval` (default 5m) up to now, as Argo sends it.
`result` is the answer's `data` (e.g. `result.service_apdex.values.values`). An answer without
any `value` (SkyWalking's metric points) — or, for other shapes, without any non-null leaf — is
no data (Inconclusive); GraphQL `errors` are an Error. One POST: no client needed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from herdsman.analysis.conditions import Observation
from herdsman.analysis.providers.base import Provider, ProviderContext
from herdsman.analysis.providers.http import (
    ProviderResponseError,
    base_url,
    exchange,
    with_retries,
)
from herdsman.api.base import duration_seconds
from herdsman.api.providers import SkyWalkingMetric
from herdsman.cluster.budget import Deadline

DEFAULT_INTERVAL = 300.0
MINUTE_FORMAT = "%Y-%m-%d %H%M"


def duration_variable(end: datetime, seconds: float) -> dict[str, str]:
    start = end - timedelta(seconds=seconds)
    return {
        "start": start.strftime(MINUTE_FORMAT),
        "end": end.strftime(MINUTE_FORMAT),
        "step": "MINUTE",
    }


def _leaves(tree: Any, key: str | None = None) -> list[tuple[str | None, Any]]:
    if isinstance(tree, dict):
        return [leaf for k, v in tree.items() for leaf in _leaves(v, k)]
    if isinstance(tree, list):
        return [leaf for item in tree for leaf in _leaves(item, key)]
    return [(key, tree)]


def as_result(document: Any) -> Observation:
    if not isinstance(document, dict):
        raise ProviderResponseError(f"skywalking answered {str(document)[:200]}")
    errors = document.get("errors")
    if errors:
        messages = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
        raise ProviderResponseError(f"skywalking: {messages or errors}")
    data = document.get("data")
    leaves = _leaves(data)
    points = [value for key, value in leaves if key == "value"]
    candidates = points if any(key == "value" for key, _ in leaves) else [v for _, v in leaves]
    return Observation(data, has_data=any(v is not None for v in candidates))


class SkyWalkingProvider(Provider[SkyWalkingMetric]):
    key = "skywalking"

    async def observe(
        self, spec: SkyWalkingMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        seconds = duration_seconds(spec.interval) or DEFAULT_INTERVAL
        body = {
            "query": spec.query,
            "variables": {"duration": duration_variable(datetime.now(UTC), seconds)},
        }
        url = base_url(spec.address, "http") + "/graphql"

        async def attempt(attempt_deadline: Deadline) -> Any:
            answer = await exchange(
                "POST",
                url,
                attempt_deadline,
                json_body=body,
                headers={"Accept": "application/json"},
            )
            return answer.json()

        return as_result(await with_retries(context, deadline, "skywalking query", attempt))
