"""The InfluxDB provider: a Flux query through the official client (influxdb-client, async).

`result` is what Argo binds: the list of every record's `_value`, table by table (`result[0]`);
no record is no data (Inconclusive). For the judge, `samples()` runs the query with Flux's
dashboard variables set to the window — `option v = {timeRangeStart, timeRangeStop,
windowPeriod}` — so a judged query reads `|> range(start: v.timeRangeStart, stop:
v.timeRangeStop)` and must return one table per group.

Credentials: the Secret `profile` (default `influxdb`) in the run's namespace, keys `address`,
`authToken` and `org`. influxdb-client is an optional dependency (the `influxdb` extra, which
the operator image installs); its async client rides on aiohttp, so a cancelled attempt closes
its socket like every other provider's.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import aiohttp

from herdsman.analysis.conditions import Observation
from herdsman.analysis.providers.base import Provider, ProviderContext, Samples, Window
from herdsman.analysis.providers.http import ProviderResponseError, secret_keys, with_retries
from herdsman.api.providers import InfluxdbMetric
from herdsman.cluster.budget import Deadline
from herdsman.cluster.retry import HttpStatusError

DEFAULT_SECRET = "influxdb"


def _client_module() -> Any:
    try:
        from influxdb_client.client import influxdb_client_async
    except ImportError as exc:  # pragma: no cover - the dev and image installs have it
        raise RuntimeError(
            "the influxdb provider needs influxdb-client: install herdsman with the `influxdb` extra"
        ) from exc
    return influxdb_client_async


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_options(window: Window) -> str:
    period = max(1, int(window.step_seconds))
    return (
        f"option v = {{timeRangeStart: {_rfc3339(window.start)}, "
        f"timeRangeStop: {_rfc3339(window.end)}, windowPeriod: {period}s}}\n"
    )


class InfluxdbProvider(Provider[InfluxdbMetric]):
    key = "influxdb"

    async def _tables(
        self, spec: InfluxdbMetric, context: ProviderContext, deadline: Deadline, query: str
    ) -> list[list[tuple[Any, Any]]]:
        module = _client_module()
        keys = await secret_keys(
            context,
            spec.profile or DEFAULT_SECRET,
            ["address", "authToken", "org"],
            deadline=deadline,
        )

        async def attempt(attempt_deadline: Deadline) -> list[list[tuple[Any, Any]]]:
            timeout_ms = max(1, int(attempt_deadline.remaining() * 1000))
            try:
                async with module.InfluxDBClientAsync(
                    url=keys["address"],
                    token=keys["authToken"],
                    org=keys["org"],
                    timeout=timeout_ms,
                ) as client:
                    tables = await client.query_api().query(query)
            except aiohttp.ClientConnectionError as exc:
                if isinstance(exc, TimeoutError):
                    raise
                raise ConnectionError(f"{keys['address']}: {exc}") from exc
            except Exception as exc:
                raise _translate(exc) from exc
            return [
                [(record.get_time(), record.get_value()) for record in table.records]
                for table in tables
            ]

        return await with_retries(context, deadline, "influxdb flux query", attempt)

    async def observe(
        self, spec: InfluxdbMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        tables = await self._tables(spec, context, deadline, spec.query)
        values = [value for table in tables for _, value in table]
        has_data = any(
            v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values
        )
        return Observation(values, has_data=has_data)

    async def samples(
        self, spec: InfluxdbMetric, context: ProviderContext, deadline: Deadline, window: Window
    ) -> Samples:
        tables = await self._tables(spec, context, deadline, window_options(window) + spec.query)
        if len(tables) > 1:
            raise ProviderResponseError(
                f"a judged metric must return one table per group, got {len(tables)}: group() it"
            )
        points = tables[0] if tables else []
        if any(v is not None and not isinstance(v, int | float) for _, v in points):
            raise ProviderResponseError("the query returned values that are not numbers")
        return Samples.of((t, v) for t, v in points if t is not None)


def _translate(exc: Exception) -> Exception:
    """influxdb-client's ApiException as HttpStatusError (it carries status and headers)."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status >= 400:
        headers = getattr(exc, "headers", None) or {}
        retry_after = headers.get("Retry-After") if hasattr(headers, "get") else None
        message = getattr(exc, "message", None) or getattr(exc, "reason", None) or str(exc)
        return HttpStatusError(status, str(message)[:300], retry_after=retry_after)
    if isinstance(exc, TimeoutError):
        return exc
    return exc
