"""The CloudWatch provider: GetMetricData through boto3 (see herdsman.analysis.providers.aws).

`result` is what Argo binds: the list of MetricDataResults with AWS' own field names, so
`result[0].Values` and `all(result[0].Values, {# <= 0.01})` keep their meaning — `Id`, `Label`,
`StatusCode`, `Values` (newest first, as GetMetricData returns them) and `Timestamps` (RFC 3339).
No values in any result is no data (Inconclusive). For the judge, the one returned series over
the window, oldest first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from herdsman.analysis.conditions import Observation
from herdsman.analysis.providers.aws import AwsAccess, aws_access, run_sync
from herdsman.analysis.providers.base import Provider, ProviderContext, Samples, Window
from herdsman.analysis.providers.http import ProviderResponseError, with_retries
from herdsman.api.base import duration_seconds
from herdsman.api.providers import CloudWatchMetric, CloudWatchMetricDataQuery
from herdsman.cluster.budget import Deadline

DEFAULT_INTERVAL = 300.0
MAX_PAGES = 10


def _int(value: int | str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise ProviderResponseError(f"period {value!r} is not a number of seconds") from exc


def request_queries(queries: list[CloudWatchMetricDataQuery]) -> list[dict[str, Any]]:
    """The spec's queries in GetMetricData's own (PascalCase) shape."""
    shaped: list[dict[str, Any]] = []
    for query in queries:
        item: dict[str, Any] = {"Id": query.id}
        if query.expression is not None:
            item["Expression"] = query.expression
        if query.label is not None:
            item["Label"] = query.label
        if query.period is not None:
            item["Period"] = _int(query.period)
        if query.return_data is not None:
            item["ReturnData"] = query.return_data
        if query.metric_stat is not None:
            stat = query.metric_stat
            metric: dict[str, Any] = {"MetricName": stat.metric.metric_name}
            if stat.metric.namespace is not None:
                metric["Namespace"] = stat.metric.namespace
            if stat.metric.dimensions:
                metric["Dimensions"] = [
                    {"Name": d.name, "Value": d.value} for d in stat.metric.dimensions
                ]
            item["MetricStat"] = {"Metric": metric, "Period": _int(stat.period), "Stat": stat.stat}
            if stat.unit is not None:
                item["MetricStat"]["Unit"] = stat.unit
        shaped.append(item)
    return shaped


def as_result(results: list[dict[str, Any]]) -> Observation:
    """MetricDataResults as the conditions see them (see the module docstring)."""
    shaped = [
        {
            "Id": item.get("Id", ""),
            "Label": item.get("Label", ""),
            "StatusCode": item.get("StatusCode", ""),
            "Values": [float(v) for v in item.get("Values", [])],
            "Timestamps": [_stamp(t) for t in item.get("Timestamps", [])],
        }
        for item in results
    ]
    return Observation(shaped, has_data=any(item["Values"] for item in shaped))


def _stamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


class CloudWatchProvider(Provider[CloudWatchMetric]):
    key = "cloud_watch"

    async def _query(
        self,
        spec: CloudWatchMetric,
        context: ProviderContext,
        deadline: Deadline,
        start: datetime,
        end: datetime,
        scan: str,
    ) -> list[dict[str, Any]]:
        access = await aws_access(context, deadline)
        queries = request_queries(spec.metric_data_queries)

        async def attempt(attempt_deadline: Deadline) -> list[dict[str, Any]]:
            return await run_sync(
                attempt_deadline, lambda config: _get(access, config, queries, start, end, scan)
            )

        return await with_retries(context, deadline, "cloudwatch GetMetricData", attempt)

    async def observe(
        self, spec: CloudWatchMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        end = datetime.now(UTC)
        seconds = duration_seconds(spec.interval) or DEFAULT_INTERVAL
        start = end - timedelta(seconds=seconds)
        results = await self._query(spec, context, deadline, start, end, "TimestampDescending")
        return as_result(results)

    async def samples(
        self, spec: CloudWatchMetric, context: ProviderContext, deadline: Deadline, window: Window
    ) -> Samples:
        results = await self._query(
            spec, context, deadline, window.start, window.end, "TimestampAscending"
        )
        if len(results) > 1:
            raise ProviderResponseError(
                f"a judged metric must return one series per group, got {len(results)}:"
                " set returnData: false on the queries that only feed an expression"
            )
        if not results:
            return Samples([], [])
        first = results[0]
        return Samples.of(zip(first.get("Timestamps", []), first.get("Values", []), strict=False))


def _get(
    access: AwsAccess,
    config: Any,
    queries: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    scan: str,
) -> list[dict[str, Any]]:
    """GetMetricData with its pages joined (one result per Id)."""
    client = access.session.client("cloudwatch", endpoint_url=access.endpoint_url, config=config)
    merged: dict[str, dict[str, Any]] = {}
    token: str | None = None
    for _ in range(MAX_PAGES):
        arguments: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": start,
            "EndTime": end,
            "ScanBy": scan,
        }
        if token:
            arguments["NextToken"] = token
        answer = client.get_metric_data(**arguments)
        for item in answer.get("MetricDataResults", []):
            into = merged.setdefault(item["Id"], {**item, "Values": [], "Timestamps": []})
            into["Values"].extend(item.get("Values", []))
            into["Timestamps"].extend(item.get("Timestamps", []))
            into["StatusCode"] = item.get("StatusCode", into.get("StatusCode"))
        token = answer.get("NextToken")
        if not token:
            break
    return list(merged.values())
