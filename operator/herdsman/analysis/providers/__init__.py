"""Metric providers, keyed by their attribute under a metric's `provider:` (`new_relic` for
`newRelic`).

A new provider is a model in herdsman.api.providers (a field of MetricProvider), one module
here subclassing `Provider`, and one entry in PROVIDERS. Modules whose client is an optional
dependency (boto3, influxdb-client) import it only when they measure.
"""

from __future__ import annotations

from typing import Any

from herdsman.analysis.providers.base import Provider
from herdsman.analysis.providers.cloudwatch import CloudWatchProvider
from herdsman.analysis.providers.datadog import DatadogProvider
from herdsman.analysis.providers.graphite import GraphiteProvider
from herdsman.analysis.providers.influxdb import InfluxdbProvider
from herdsman.analysis.providers.job import JobProvider
from herdsman.analysis.providers.kayenta import KayentaProvider
from herdsman.analysis.providers.newrelic import NewRelicProvider
from herdsman.analysis.providers.prometheus import PrometheusProvider
from herdsman.analysis.providers.skywalking import SkyWalkingProvider
from herdsman.analysis.providers.wavefront import WavefrontProvider
from herdsman.analysis.providers.web import WebProvider
from herdsman.api.analysis import Metric
from herdsman.api.base import ApiModel

PROVIDERS: dict[str, Provider[Any]] = {
    provider.key: provider
    for provider in (
        PrometheusProvider(),
        WebProvider(),
        DatadogProvider(),
        NewRelicProvider(),
        CloudWatchProvider(),
        WavefrontProvider(),
        GraphiteProvider(),
        InfluxdbProvider(),
        SkyWalkingProvider(),
        KayentaProvider(),
        JobProvider(),
    )
}


def provider_for(metric: Metric) -> tuple[Provider[Any], ApiModel]:
    """The provider that measures `metric`, and the spec it takes."""
    kind = metric.provider.kind
    spec = getattr(metric.provider, kind)
    assert isinstance(spec, ApiModel)
    return PROVIDERS[kind], spec
