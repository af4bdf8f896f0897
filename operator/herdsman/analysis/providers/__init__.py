"""Metric providers, keyed by their field name under a metric's `provider:`.

A new provider is a model in herdsman.api.analysis (a field of MetricProvider), one module here
subclassing `Provider`, and one entry in PROVIDERS.
"""

from __future__ import annotations

from typing import Any

from herdsman.analysis.providers.base import Provider
from herdsman.analysis.providers.prometheus import PrometheusProvider
from herdsman.analysis.providers.web import WebProvider
from herdsman.api.analysis import Metric
from herdsman.api.base import ApiModel

PROVIDERS: dict[str, Provider[Any]] = {
    provider.key: provider for provider in (PrometheusProvider(), WebProvider())
}


def provider_for(metric: Metric) -> tuple[Provider[Any], ApiModel]:
    """The provider that measures `metric`, and the spec it takes."""
    kind = metric.provider.kind
    spec = getattr(metric.provider, kind)
    assert isinstance(spec, ApiModel)
    return PROVIDERS[kind], spec
