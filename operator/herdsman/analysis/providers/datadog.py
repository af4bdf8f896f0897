"""The Datadog provider: metrics queries over Datadog's v1 and v2 APIs, as Argo Rollouts does.

- v1: `GET /api/v1/query` over the window `interval` ending now; `result` is the last point of
  the first series.
- v2: `POST /api/v2/query/scalar`, the window reduced by `aggregator` (default `last`); the
  queries combined by `formula` (a lone query is its own formula). `result` is one number, or
  — when the query groups (`by {tag}`, a `group` column in the answer) — a list of numbers.

No series, no points or a null value is no data (Inconclusive): Argo hands the condition `nil`
and documents `default(result, 0)` to survive it, which would pass a canary that reports
nothing; Herdsman never passes without data.

Credentials: the Secret `secretRef.name` (default `datadog`) in the run's namespace, keys
`api-key`, `app-key` and optionally `address` (e.g. https://api.datadoghq.eu). For the judge,
`samples()` returns the one series of `query` over the window (v1 series or v2 timeseries).

Plain aiohttp rather than the official datadog-api-client: that client is synchronous (urllib3;
its async mode brings another HTTP stack) and large, for two JSON calls.
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
from herdsman.api.base import duration_seconds
from herdsman.api.providers import DatadogMetric
from herdsman.cluster.budget import Deadline

DEFAULT_SECRET = "datadog"
DEFAULT_ADDRESS = "https://api.datadoghq.com"


class DatadogProvider(Provider[DatadogMetric]):
    key = "datadog"

    def __init__(self, now: Any = time.time) -> None:
        self._now = now

    async def _connection(
        self, spec: DatadogMetric, context: ProviderContext, deadline: Deadline
    ) -> tuple[str, dict[str, str]]:
        secret = spec.secret_ref.name if spec.secret_ref else DEFAULT_SECRET
        keys = await secret_keys(
            context, secret, ["api-key", "app-key"], ["address"], deadline=deadline
        )
        headers = {
            "DD-API-KEY": keys["api-key"],
            "DD-APPLICATION-KEY": keys["app-key"],
            "Accept": "application/json",
        }
        return base_url(keys.get("address", DEFAULT_ADDRESS)), headers

    async def _call(
        self,
        spec: DatadogMetric,
        context: ProviderContext,
        deadline: Deadline,
        method: str,
        path: str,
        **request: Any,
    ) -> Any:
        address, headers = await self._connection(spec, context, deadline)
        timeout = duration_seconds(spec.request_timeout) or 10.0

        async def attempt(attempt_deadline: Deadline) -> Any:
            answer = await exchange(
                method,
                address + path,
                attempt_deadline,
                headers=headers,
                request_timeout=timeout,
                **request,
            )
            return answer.json()

        document = await with_retries(context, deadline, f"datadog {path}", attempt)
        if not isinstance(document, dict):
            raise ProviderResponseError(f"datadog answered {str(document)[:200]}")
        errors = document.get("errors") or document.get("error")
        if errors and document.get("status") != "ok":
            raise ProviderResponseError(f"datadog: {errors}")
        return document

    def _range(self, spec: DatadogMetric) -> tuple[int, int]:
        now = int(self._now())
        return now - int(duration_seconds(spec.interval) or 300), now

    async def observe(
        self, spec: DatadogMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        start, end = self._range(spec)
        if spec.api_version == "v1":
            assert spec.query is not None  # the CRD: v1 takes `query` only
            document = await self._call(
                spec,
                context,
                deadline,
                "GET",
                "/api/v1/query",
                params={"query": spec.query, "from": str(start), "to": str(end)},
            )
            return v1_last_point(document)
        body = {
            "data": {
                "type": "scalar_request",
                "attributes": {
                    "from": start * 1000,
                    "to": end * 1000,
                    "queries": [
                        {
                            "data_source": "metrics",
                            "name": name,
                            "query": query,
                            "aggregator": spec.aggregator or "last",
                        }
                        for name, query in _queries(spec).items()
                    ],
                    "formulas": [{"formula": _formula(spec)}],
                },
            }
        }
        document = await self._call(
            spec, context, deadline, "POST", "/api/v2/query/scalar", json_body=body
        )
        return v2_scalar(document)

    async def samples(
        self, spec: DatadogMetric, context: ProviderContext, deadline: Deadline, window: Window
    ) -> Samples:
        assert spec.query is not None  # the CRD: a judged Datadog metric has a single `query`
        start, end = int(window.start.timestamp()), int(window.end.timestamp())
        if spec.api_version == "v1":
            document = await self._call(
                spec,
                context,
                deadline,
                "GET",
                "/api/v1/query",
                params={"query": spec.query, "from": str(start), "to": str(end)},
            )
            series = document.get("series") or []
            _one_series(len(series))
            if not series:
                return Samples([], [])
            points = series[0].get("pointlist") or []
            return Samples.of((p[0], p[1]) for p in points if len(p) == 2)
        body = {
            "data": {
                "type": "timeseries_request",
                "attributes": {
                    "from": start * 1000,
                    "to": end * 1000,
                    "interval": int(window.step_seconds * 1000),
                    "queries": [{"data_source": "metrics", "name": "query", "query": spec.query}],
                    "formulas": [{"formula": "query"}],
                },
            }
        }
        document = await self._call(
            spec, context, deadline, "POST", "/api/v2/query/timeseries", json_body=body
        )
        attributes = (document.get("data") or {}).get("attributes") or {}
        values = attributes.get("values") or []
        _one_series(len(values))
        times = attributes.get("times") or []
        return Samples.of(zip(times, values[0], strict=False)) if values else Samples([], [])


def _queries(spec: DatadogMetric) -> dict[str, str]:
    if spec.queries:
        return dict(spec.queries)
    assert spec.query is not None
    return {"query": spec.query}


def _formula(spec: DatadogMetric) -> str:
    return spec.formula or next(iter(_queries(spec)))


def _one_series(count: int) -> None:
    if count > 1:
        raise ProviderResponseError(
            f"a judged metric must return one series per group, got {count}: aggregate it"
        )


def _finite(values: Any) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def v1_last_point(document: dict[str, Any]) -> Observation:
    """The last non-null point of the first series of a v1 answer."""
    series = document.get("series") or []
    if not series:
        return Observation(None, has_data=False)
    points = [p for p in (series[0].get("pointlist") or []) if len(p) == 2 and p[1] is not None]
    if not points:
        return Observation(None, has_data=False)
    return observe_numbers(float(points[-1][1]))


def v2_scalar(document: dict[str, Any]) -> Observation:
    """A v2 scalar answer: one number, or a list when the query groups by a tag."""
    attributes = (document.get("data") or {}).get("attributes") or {}
    columns = attributes.get("columns") or []
    numbers = [c for c in columns if c.get("type") == "number"]
    if not numbers:
        return Observation(None, has_data=False)
    values = numbers[-1].get("values") or []
    grouped = any(c.get("type") == "group" for c in columns)
    if grouped:
        return observe_numbers([math.nan if v is None else float(v) for v in values])
    if not values or values[0] is None:
        return Observation(None, has_data=False)
    return observe_numbers(float(values[0]))
