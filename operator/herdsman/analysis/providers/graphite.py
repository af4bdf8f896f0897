"""The Graphite provider: the render API (`/render?<query>&format=json`).

`query` holds the render parameters as Argo takes them (`target=...`, optionally `from=-5min`),
its whitespace folded so a multi-line template stays readable. `result` is the list of the
first target's non-null values, oldest first (`result[0]`, `all(result, # > 90)`); none is no
data (Inconclusive). For the judge, `samples()` asks for the window (`from`/`until` replaced)
and returns the one target's values. Graphite has no official client; this is one GET.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from herdsman.analysis.conditions import Observation, observe_numbers
from herdsman.analysis.providers.base import Provider, ProviderContext, Samples, Window
from herdsman.analysis.providers.http import (
    ProviderResponseError,
    base_url,
    exchange,
    with_retries,
)
from herdsman.api.providers import GraphiteMetric
from herdsman.cluster.budget import Deadline


def render_params(query: str) -> list[tuple[str, str]]:
    """The query's parameters (whitespace folded, `format` forced to json)."""
    folded = " ".join(query.split())
    params = [(k, v) for k, v in parse_qsl(folded, keep_blank_values=True) if k != "format"]
    if not any(k == "target" for k, _ in params):
        raise ProviderResponseError("a graphite query needs a target=... parameter")
    return [*params, ("format", "json")]


def targets_of(document: Any) -> list[Samples]:
    """Each target's non-null points, oldest first (Graphite sends [value, time] pairs)."""
    if not isinstance(document, list):
        raise ProviderResponseError(f"graphite answered {str(document)[:200]}")
    return [
        Samples.of((p[1], p[0]) for p in (target.get("datapoints") or []) if len(p) == 2)
        for target in document
    ]


class GraphiteProvider(Provider[GraphiteMetric]):
    key = "graphite"

    async def _render(
        self,
        spec: GraphiteMetric,
        context: ProviderContext,
        deadline: Deadline,
        params: list[tuple[str, str]],
    ) -> list[Samples]:
        url = base_url(spec.address, "http") + "/render"

        async def attempt(attempt_deadline: Deadline) -> Any:
            answer = await exchange("GET", url, attempt_deadline, params=params)
            return answer.json()

        return targets_of(await with_retries(context, deadline, "graphite render", attempt))

    async def observe(
        self, spec: GraphiteMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        targets = await self._render(spec, context, deadline, render_params(spec.query))
        values = targets[0].values if targets else []
        return observe_numbers(values)

    async def samples(
        self, spec: GraphiteMetric, context: ProviderContext, deadline: Deadline, window: Window
    ) -> Samples:
        params = [(k, v) for k, v in render_params(spec.query) if k not in ("from", "until")]
        params += [
            ("from", str(int(window.start.timestamp()))),
            ("until", str(int(window.end.timestamp()))),
        ]
        targets = await self._render(spec, context, deadline, params)
        if len(targets) > 1:
            raise ProviderResponseError(
                f"a judged metric must return one target per group, got {len(targets)}"
            )
        return targets[0] if targets else Samples([], [])
