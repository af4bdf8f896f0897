"""The CloudWatch provider against moto's server, which speaks GetMetricData and checks SigV4
signatures against the IAM user it holds: credentials from the namespace's `aws` Secret, values,
no data, a wrong key, and series for the judge. (moto does not evaluate metric-math
expressions, so Argo's `errors / requests` shape is checked as the request it becomes.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from harness.analysis import metric, run_of
from harness.fakes import FakeSecrets
from harness.moto import Moto, moto_server
from herdsman.analysis.measure import measure
from herdsman.analysis.providers.cloudwatch import request_queries
from herdsman.analysis.runs import Due, MeasurementResult
from herdsman.api.providers import CloudWatchMetric
from herdsman.cluster.budget import AccessPolicy, Deadline

pytestmark = pytest.mark.providers

FAST = AccessPolicy(attempts=2, backoff_base=0.01, backoff_cap=0.05, call_timeout=5.0)


@pytest.fixture(scope="module")
def cloudwatch() -> Iterator[Moto]:
    with moto_server() as moto:
        client = boto3.client(
            "cloudwatch",
            endpoint_url=moto.url,
            region_name=moto.region,
            aws_access_key_id=moto.access_key,
            aws_secret_access_key=moto.secret_key,
        )
        now = datetime.now(UTC)
        data = []
        for minutes in (2, 4, 6):
            at = now - timedelta(minutes=minutes)
            for group, errors in (("checkout-v001-baseline", 1.0), ("checkout-v002", 30.0)):
                dims = [{"Name": "group", "Value": group}]
                data.append(
                    {
                        "MetricName": "errors",
                        "Dimensions": dims,
                        "Timestamp": at,
                        "Value": errors,
                        "Unit": "Count",
                    }
                )
                data.append(
                    {
                        "MetricName": "requests",
                        "Dimensions": dims,
                        "Timestamp": at,
                        "Value": 1000.0,
                        "Unit": "Count",
                    }
                )
        client.put_metric_data(Namespace="app", MetricData=data)
        yield moto


def secrets(moto: Moto, secret_key: str | None = None) -> FakeSecrets:
    return FakeSecrets(
        {
            ("shop", "aws", "AWS_ACCESS_KEY_ID"): moto.access_key,
            ("shop", "aws", "AWS_SECRET_ACCESS_KEY"): secret_key or moto.secret_key,
            ("shop", "aws", "AWS_REGION"): moto.region,
            ("shop", "aws", "AWS_ENDPOINT_URL"): moto.url,
        }
    )


def stat(name: str, group: str, *, return_data: bool | None = None) -> dict[str, Any]:
    query: dict[str, Any] = {
        "id": name,
        "metricStat": {
            "metric": {
                "namespace": "app",
                "metricName": name,
                "dimensions": [{"name": "group", "value": group}],
            },
            "period": 120,
            "stat": "Sum",
            "unit": "Count",
        },
    }
    if return_data is not None:
        query["returnData"] = return_data
    return query


def error_rate(group: str) -> dict[str, Any]:
    """The corpus' shape: rate = errors / requests, the two inputs not returned."""
    return {
        "cloudWatch": {
            "interval": "15m",
            "metricDataQueries": [
                {"id": "rate", "expression": "errors / requests"},
                stat("errors", group, return_data=False),
                stat("requests", group, return_data=False),
            ],
        }
    }


def measured(provider: dict[str, Any], condition: str, store: FakeSecrets) -> MeasurementResult:
    run = run_of(metric("m", provider=provider, successCondition=condition))
    return asyncio.run(measure(run, [Due("m")], deadline=Deadline(15), secrets=store, policy=FAST))[
        0
    ]


CONDITION = "size(result[0].Values) >= 2 && result[0].Values.all(v, v <= 5.0)"


def errors_of(group: str) -> dict[str, Any]:
    return {"cloudWatch": {"interval": "15m", "metricDataQueries": [stat("errors", group)]}}


def test_a_healthy_group_passes_and_a_bad_one_fails(cloudwatch: Moto) -> None:
    good = measured(errors_of("checkout-v001-baseline"), CONDITION, secrets(cloudwatch))
    bad = measured(errors_of("checkout-v002"), CONDITION, secrets(cloudwatch))
    assert good.phase == "Successful", good.message
    assert '"Id":"errors"' in good.value
    assert '"Values":[1.0,1.0,1.0]' in good.value
    assert bad.phase == "Failed", bad.message
    assert "30.0" in bad.value


def test_argos_metric_math_shape_becomes_getmetricdata_queries() -> None:
    spec = CloudWatchMetric.model_validate(error_rate("checkout-v002")["cloudWatch"])
    queries = request_queries(spec.metric_data_queries)
    assert queries[0] == {"Id": "rate", "Expression": "errors / requests"}
    assert queries[1] == {
        "Id": "errors",
        "ReturnData": False,
        "MetricStat": {
            "Metric": {
                "MetricName": "errors",
                "Namespace": "app",
                "Dimensions": [{"Name": "group", "Value": "checkout-v002"}],
            },
            "Period": 120,
            "Stat": "Sum",
            "Unit": "Count",
        },
    }


def test_a_metric_with_no_data_is_inconclusive(cloudwatch: Moto) -> None:
    provider = {"cloudWatch": {"metricDataQueries": [stat("errors", "no-such-group")]}}
    result = measured(provider, CONDITION, secrets(cloudwatch))
    assert result.phase == "Inconclusive", result.message


def test_a_wrong_secret_key_is_an_error(cloudwatch: Moto) -> None:
    result = measured(
        errors_of("checkout-v002"), CONDITION, secrets(cloudwatch, secret_key="not-the-key")
    )
    assert result.phase == "Error"
    assert "403" in result.message or "Signature" in result.message, result.message


def test_without_the_aws_secret_it_is_an_error_naming_it(cloudwatch: Moto) -> None:
    result = measured(errors_of("checkout-v002"), CONDITION, FakeSecrets())
    assert result.phase == "Error"
    assert "Secret shop/aws" in result.message


def test_cloudwatch_feeds_the_judge_one_series_per_group(cloudwatch: Moto) -> None:
    provider = {"cloudWatch": {"metricDataQueries": [stat("errors", "{{group}}")]}}
    run = run_of(metric("errors", provider=provider, judge={"direction": "increase"}))
    result = asyncio.run(
        measure(
            run,
            [Due("errors", ("baseline", "canary"))],
            deadline=Deadline(15),
            secrets=secrets(cloudwatch),
            policy=FAST,
            clock=lambda: datetime.now(UTC),
        )
    )[0]
    assert result.message == ""
    assert result.samples is not None
    assert result.samples["baseline"]
    assert set(result.samples["baseline"]) == {1.0}
    assert result.samples["canary"]
    assert set(result.samples["canary"]) == {30.0}
