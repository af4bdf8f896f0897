"""The Wavefront (Tanzu Observability) provider: a WQL query through the chart API.

`result` is what Argo binds: the latest point of the one series returned (a number), or a list
of each series' latest point when there are several. No series, or a NaN, is no data
(Inconclusive). For the judge, `samples()` returns the one series' points over the window.

Credentials: the Secret `wavefront-api-tokens` in the run's namespace, whose key is the
`address` (e.g. `example.wavefront.com`) and whose value is that cluster's API token, sent as a
bearer token. The official Python client (wavefront-api-client) is generated, synchronous and
unmaintained since 2023; the chart API is one GET (aiohttp).
"""

from __future__ import annotations

import math
import time
from typing import Any

from herdsman.analysis.conditions import Observation, observe_numbers
from herdsman.analysis.providers.base import Provider, ProviderContext, Samples, Window
from herdsman.analysis.providers.http import (
    ProviderResponseError,
    base_url,
    exchange,
    secret_keys,
    with_retries,
)
from herdsman.api.providers import WavefrontMetric
from herdsman.cluster.budget import Deadline

SECRET = "wavefront-api-tokens"


def token_key(address: str) -> str:
    """The Secret key holding the token of `address`: the address without a scheme."""
    return address.strip().split("://", 1)[-1].rstrip("/")


def points_of(document: Any) -> list[list[tuple[float, float]]]:
    """Each series' (time, value) points, oldest first, from a chart API answer."""
    if not isinstance(document, dict):
        raise ProviderResponseError(f"wavefront answered {str(document)[:200]}")
    if document.get("errorType") or document.get("errorMessage"):
        raise ProviderResponseError(f"wavefront: {document.get('errorMessage')}")
    found: list[list[tuple[float, float]]] = []
    for series in document.get("timeseries") or []:
        points = sorted((p for p in series.get("data") or [] if len(p) == 2), key=lambda p: p[0])
        found.append([(float(t), math.nan if v is None else float(v)) for t, v in points])
    return found


def latest(series: list[list[float]]) -> Observation:
    values = [s[-1] if s else math.nan for s in series]
    if not values or any(math.isnan(v) for v in values):
        return Observation(values[0] if len(values) == 1 else values, has_data=False)
    return observe_numbers(values[0] if len(values) == 1 else values)


class WavefrontProvider(Provider[WavefrontMetric]):
    key = "wavefront"

    def __init__(self, now: Any = time.time) -> None:
        self._now = now

    async def _query(
        self,
        spec: WavefrontMetric,
        context: ProviderContext,
        deadline: Deadline,
        params: dict[str, str],
    ) -> list[list[tuple[float, float]]]:
        key = token_key(spec.address)
        token = (await secret_keys(context, SECRET, [key], deadline=deadline))[key]
        url = base_url(spec.address) + "/api/v2/chart/api"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        query = {"q": " ".join(spec.query.split()), **params}

        async def attempt(attempt_deadline: Deadline) -> Any:
            answer = await exchange("GET", url, attempt_deadline, headers=headers, params=query)
            return answer.json()

        return points_of(await with_retries(context, deadline, "wavefront query", attempt))

    async def observe(
        self, spec: WavefrontMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        start = int(self._now() * 1000)
        params = {"s": str(start), "g": "s", "p": "1", "sorted": "false"}
        points = await self._query(spec, context, deadline, params)
        return latest([[v for _, v in series] for series in points])

    async def samples(
        self, spec: WavefrontMetric, context: ProviderContext, deadline: Deadline, window: Window
    ) -> Samples:
        params = {
            "s": str(int(window.start.timestamp() * 1000)),
            "e": str(int(window.end.timestamp() * 1000)),
            "g": "s" if window.step_seconds < 60 else "m",
            "summarization": "MEAN",
        }
        series = await self._query(spec, context, deadline, params)
        if len(series) > 1:
            raise ProviderResponseError(
                f"a judged metric must return one series per group, got {len(series)}"
            )
        return Samples.of(series[0] if series else [])
